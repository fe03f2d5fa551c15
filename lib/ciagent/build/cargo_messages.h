// Placeholder; being written.
#ifndef CIAGENT_BUILD_CARGO_MESSAGES_H_
#define CIAGENT_BUILD_CARGO_MESSAGES_H_
#endif
