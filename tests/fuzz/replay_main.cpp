// Runs a libFuzzer target's entry point over every file of the directories (or files)
// given on the command line, without libFuzzer: the normal test suite replays the seed
// corpora and kept crashers this way, under whatever sanitizers the build has.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void replay_file(const std::filesystem::path& path, unsigned* count) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ++*count;
}
}  // namespace

int main(int argc, char** argv) {
  unsigned count = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path path(argv[i]);
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
        if (entry.is_regular_file()) replay_file(entry.path(), &count);
      }
    } else {
      replay_file(path, &count);
    }
  }
  std::printf("replayed %u inputs\n", count);
  return count > 0 ? 0 : 1;
}
