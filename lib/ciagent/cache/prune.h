// Placeholder; being written.
#ifndef CIAGENT_CACHE_PRUNE_H_
#define CIAGENT_CACHE_PRUNE_H_
#endif
