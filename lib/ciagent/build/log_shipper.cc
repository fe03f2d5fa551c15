#include "ciagent/build/log_shipper.h"
