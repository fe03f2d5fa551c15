// Placeholder; being written.
#ifndef CIAGENT_BUILD_LOG_SHIPPER_H_
#define CIAGENT_BUILD_LOG_SHIPPER_H_
#endif
