#include "ciagent/build/report.h"
