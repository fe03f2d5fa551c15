#include "ciagent/cache/prune.h"
