// One Redis round trip through RedisClient, the floor under every queue
// operation: PING, and a command and reply of the sizes a queue cycle moves
// (about 700 bytes out, 400 back: SET then GET of a 700-byte value is
// timed as GET alone). scripts/bench-redis-tls.sh runs it over redis:// and
// rediss:// of one server; redis-benchmark -c 1 gives the peer's figure.
//
//   export CIAGENT_BENCH_REDIS_URL=rediss://127.0.0.1:6380 REDIS_CA_FILE=ca.pem
//   build/bench/redis_round_trip_benchmark
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {
namespace {

absl::StatusOr<RedisOptions> BenchRedisOptions() {
  const char* url = std::getenv("CIAGENT_BENCH_REDIS_URL");
  if (url == nullptr || *url == '\0') {
    return absl::FailedPreconditionError("CIAGENT_BENCH_REDIS_URL is not set");
  }
  absl::StatusOr<RedisOptions> options = RedisOptionsFromUrl(url);
  if (!options.ok()) return options;
  if (absl::Status applied = ApplyRedisEnvironment(&*options); !applied.ok()) {
    return applied;
  }
  return options;
}

void RoundTrips(benchmark::State& state,
                std::initializer_list<absl::string_view> command) {
  absl::StatusOr<RedisOptions> options = BenchRedisOptions();
  if (!options.ok()) {
    state.SkipWithError(std::string(options.status().message()).c_str());
    return;
  }
  RedisClient client(*options);
  if (absl::Status set = client.Command({"SET", "bench:round-trip",
                                         std::string(700, 'x')}).status();
      !set.ok()) {
    state.SkipWithError(std::string(set.message()).c_str());
    return;
  }
  for (auto _ : state) {
    absl::StatusOr<RedisReply> reply = client.Command(command);
    if (!reply.ok()) {
      state.SkipWithError(std::string(reply.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(reply->str.data());
  }
  client.Command({"DEL", "bench:round-trip"}).IgnoreError();
  state.SetItemsProcessed(state.iterations());
}

void BM_Ping(benchmark::State& state) { RoundTrips(state, {"PING"}); }
BENCHMARK(BM_Ping)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_Get700Bytes(benchmark::State& state) {
  RoundTrips(state, {"GET", "bench:round-trip"});
}
BENCHMARK(BM_Get700Bytes)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ciagent
