#include "ciagent/cache/build_cache.h"
