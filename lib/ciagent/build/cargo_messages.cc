#include "ciagent/build/cargo_messages.h"
