// Placeholder; being written.
#ifndef CIAGENT_CACHE_BUILD_CACHE_H_
#define CIAGENT_CACHE_BUILD_CACHE_H_
#endif
