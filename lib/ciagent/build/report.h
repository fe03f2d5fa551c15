// Placeholder; being written.
#ifndef CIAGENT_BUILD_REPORT_H_
#define CIAGENT_BUILD_REPORT_H_
#endif
