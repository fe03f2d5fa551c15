// Replays fuzz inputs through LLVMFuzzerTestOneInput without libFuzzer, so
// that compilers without -fsanitize=fuzzer (gcc) still run the seed corpus
// as a unit test:
//   job_parser_fuzz_replay tests/fuzz/corpus/job_parser [more files or dirs]
// Each argument is a file or a directory whose regular files are replayed
// (in name order, not recursively). Exit status 1 if an argument cannot be
// read; a violated property aborts inside the target.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool ReadFile(const std::filesystem::path& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  contents->assign(std::istreambuf_iterator<char>(in),
                   std::istreambuf_iterator<char>());
  return !in.bad();
}

// The files an argument names: itself, or a directory's regular files.
bool ListInputs(const std::filesystem::path& arg,
                std::vector<std::filesystem::path>* inputs) {
  std::error_code error;
  if (!std::filesystem::is_directory(arg, error)) {
    inputs->push_back(arg);
    return true;
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(arg, error)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  if (error) return false;
  std::sort(files.begin(), files.end());
  inputs->insert(inputs->end(), files.begin(), files.end());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (!ListInputs(argv[i], &inputs)) {
      std::fprintf(stderr, "cannot list %s\n", argv[i]);
      return 1;
    }
  }
  size_t replayed = 0;
  for (const std::filesystem::path& input : inputs) {
    std::string contents;
    if (!ReadFile(input, &contents)) {
      std::fprintf(stderr, "cannot read %s\n", input.c_str());
      return 1;
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(contents.data()),
                           contents.size());
    ++replayed;
  }
  std::printf("%zu inputs replayed\n", replayed);
  return replayed > 0 ? 0 : 1;
}
