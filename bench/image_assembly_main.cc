// image_assembly: one AssembleImage, for scripts/bench-image.sh.
//
//   image_assembly BASE REGISTRY_URL REPOSITORY TAG BINARY WORK_DIR
//
// Assembles BASE (a reference, e.g. 127.0.0.1:5000/base/tiny:1) plus the
// executable BINARY (at /usr/local/bin/<its name>, entrypoint, user 65532),
// created at the Unix time 1700000000, and pushes it to REGISTRY_URL as
// REPOSITORY:TAG, what the image step does for `image.base`. Prints one JSON
// line on stdout:
//
//   {"seconds":0.123,"assembly_seconds":0.08,"push_seconds":0.04,
//    "digest":"sha256:...","layer_bytes":123,"blobs_uploaded":2,
//    "blobs_mounted":1,"blobs_copied":0}
//
// `seconds` is the wall-clock time of the AssembleImage call; the script
// times the whole process too. Exit status 1 with the status on stderr when
// it fails, 2 on wrong usage.
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/image/assembly.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: image_assembly BASE REGISTRY_URL REPOSITORY TAG "
                 "BINARY WORK_DIR\n");
    return 2;
  }
  const std::string binary = argv[5];
  ciagent::AssemblyOptions options;
  options.image.base = argv[1];
  options.executables = {
      {binary.substr(binary.rfind('/') + 1), binary}};
  options.created = absl::FromUnixSeconds(1700000000);
  options.registry.registry = argv[2];
  // One attempt: a retry would hide a failure inside the timing.
  options.registry.max_attempts = 1;
  options.repository = argv[3];
  options.tags = {argv[4]};
  options.work_dir = argv[6];

  const absl::Time start = absl::Now();
  absl::StatusOr<ciagent::AssemblyResult> result =
      ciagent::AssembleImage(options);
  const absl::Duration elapsed = absl::Now() - start;
  if (!result.ok()) {
    std::fprintf(stderr, "image_assembly: %s\n",
                 result.status().ToString().c_str());
    return 1;
  }
  ciagent::JsonObjectBuilder json;
  json.AddRaw("seconds", std::to_string(absl::ToDoubleSeconds(elapsed)))
      .AddRaw("assembly_seconds",
              std::to_string(absl::ToDoubleSeconds(result->assembly_duration)))
      .AddRaw("push_seconds",
              std::to_string(absl::ToDoubleSeconds(result->push.duration)))
      .Add("digest", result->digest)
      .Add("layer_bytes", static_cast<int64_t>(result->layer_bytes))
      .Add("blobs_uploaded", result->push.blobs_uploaded)
      .Add("blobs_mounted", result->push.blobs_mounted)
      .Add("blobs_copied", result->push.blobs_copied);
  std::printf("%s\n", std::move(json).Build().c_str());
  return 0;
}
