#include "ciagent/git/internal/pack_indexer.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ciagent/base/cpus.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/git/internal/pack_object.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

constexpr size_t kPackHeaderSize = 12;
// Deeper delta trees are refused: git itself never writes chains deeper
// than 4095, and each level holds one object in memory.
constexpr size_t kMaxDeltaDepth = 10000;
constexpr uint32_t kNoEntry = UINT32_MAX;

absl::Status FileError(absl::string_view operation, const std::string& path,
                       int error) {
  const std::string message =
      absl::StrCat(operation, " ", path, ": ", std::strerror(error));
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::UnavailableError(message);
}

// One entry of the pack, as parsed and then resolved.
struct Entry {
  uint64_t offset = 0;       // of the entry's header
  uint64_t data_offset = 0;  // of its zlib stream
  uint64_t end = 0;          // one past its zlib stream
  uint64_t size = 0;         // inflated size (of the object or the delta)
  uint64_t base_offset = 0;  // offset deltas: the base entry's offset
  uint32_t crc32 = 0;        // of the packed bytes, header included
  uint8_t packed_type = 0;
  uint8_t object_type = 0;  // commit, tree, blob or tag once resolved
  Oid oid{};
};

// A reference delta waiting for its base, found by id.
struct ReferenceDelta {
  Oid base;
  uint32_t entry;
};

void PutBigEndian32(std::string* out, uint32_t value) {
  const char bytes[4] = {
      static_cast<char>(value >> 24), static_cast<char>(value >> 16),
      static_cast<char>(value >> 8), static_cast<char>(value)};
  out->append(bytes, 4);
}

absl::Status WriteAll(int fd, const void* data, size_t size,
                      const std::string& path) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError("write", path, errno);
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

class PackIndexerImpl : public PackIndexer {
 public:
  PackIndexerImpl(std::string pack_dir, PackIndexerOptions options, int fd,
                  std::string temp_path)
      : pack_dir_(std::move(pack_dir)),
        options_(std::move(options)),
        fd_(fd),
        temp_path_(std::move(temp_path)) {
    parser_ = std::thread([this] { ParseInBackground(); });
  }

  ~PackIndexerImpl() override {
    {
      absl::MutexLock lock(&mu_);
      input_done_ = true;
    }
    if (parser_.joinable()) parser_.join();
    if (mapped_ != nullptr) munmap(mapped_, mapped_size_);
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }

  absl::Status Append(absl::string_view bytes) override {
    {
      absl::MutexLock lock(&mu_);
      if (!parser_status_.ok()) return parser_status_;
    }
    CIAGENT_RETURN_IF_ERROR(
        WriteAll(fd_, bytes.data(), bytes.size(), temp_path_));
    absl::MutexLock lock(&mu_);
    written_ += bytes.size();
    received_bytes_.store(static_cast<int64_t>(written_));
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Commit() override {
    {
      absl::MutexLock lock(&mu_);
      input_done_ = true;
    }
    parser_.join();
    {
      absl::MutexLock lock(&mu_);
      CIAGENT_RETURN_IF_ERROR(parser_status_);
    }
    CIAGENT_RETURN_IF_ERROR(MapPack());
    CIAGENT_RETURN_IF_ERROR(LinkDeltas());
    CIAGENT_RETURN_IF_ERROR(ResolveDeltas());
    return WriteIndexAndRename();
  }

  PackIndexerProgress progress() const override {
    return PackIndexerProgress{
        .total_objects = total_objects_.load(),
        .received_objects = received_objects_.load(),
        .indexed_objects = indexed_objects_.load(),
        .total_deltas = total_deltas_.load(),
        .indexed_deltas = indexed_deltas_.load(),
        .received_bytes = received_bytes_.load(),
    };
  }

 private:
  // ---- Phase 1: parsing as the pack arrives (parser thread) ----

  // The parser's view of the temporary file: a window of bytes read from it
  // behind the writer. Bytes leave the window through Consume, which hashes
  // them into the pack's checksum and the current entry's CRC-32.
  class Reader {
   public:
    explicit Reader(PackIndexerImpl* owner) : owner_(owner), buffer_(1 << 20) {}

    const uint8_t* data() const { return buffer_.data() + begin_; }
    size_t available() const { return end_ - begin_; }
    uint64_t offset() const { return consumed_; }

    // Reads more of the file into the window, waiting for the writer.
    // False when the input ended first.
    bool Fill() {
      if (begin_ == end_) {
        begin_ = end_ = 0;
      } else if (end_ == buffer_.size()) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      const uint64_t file_end = owner_->WaitForBytesBeyond(file_pos_);
      if (file_end <= file_pos_) return false;
      const size_t want = static_cast<size_t>(
          std::min<uint64_t>(buffer_.size() - end_, file_end - file_pos_));
      const ssize_t n = ::pread(owner_->fd_, buffer_.data() + end_, want,
                                static_cast<off_t>(file_pos_));
      if (n <= 0) return false;
      end_ += static_cast<size_t>(n);
      file_pos_ += static_cast<uint64_t>(n);
      return true;
    }

    // Makes at least `n` bytes (n <= 64) available; false if the input ends.
    bool Ensure(size_t n) {
      while (available() < n) {
        if (!Fill()) return false;
      }
      return true;
    }

    void Consume(size_t n, bool hash = true) {
      if (hash) {
        pack_sha1_.Update(data(), n);
        crc_ = crc32_z(crc_, data(), n);
      }
      begin_ += n;
      consumed_ += n;
    }

    uint8_t Byte() {
      const uint8_t byte = *data();
      Consume(1);
      return byte;
    }

    void StartEntry() { crc_ = crc32_z(0, nullptr, 0); }
    uint32_t crc() const { return crc_; }
    Oid FinishPackChecksum() { return pack_sha1_.Finish(); }

   private:
    PackIndexerImpl* owner_;
    std::vector<uint8_t> buffer_;
    size_t begin_ = 0;
    size_t end_ = 0;
    uint64_t file_pos_ = 0;  // file offset of buffer_[end_]
    uint64_t consumed_ = 0;  // file offset of buffer_[begin_]
    Sha1 pack_sha1_;
    uLong crc_ = 0;
  };

  // Blocks until the file holds more than `position` bytes or the input
  // ended; returns the file's size then.
  uint64_t WaitForBytesBeyond(uint64_t position) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, position] {
      return written_ > position || input_done_;
    };
    mu_.Await(absl::Condition(&ready));
    return written_;
  }

  void ParseInBackground() {
    absl::Status status = Parse();
    absl::MutexLock lock(&mu_);
    parser_status_ = std::move(status);
  }

  absl::Status Parse() {
    Reader reader(this);
    if (!reader.Ensure(kPackHeaderSize)) return PackError("truncated header");
    const uint8_t* header = reader.data();
    if (std::memcmp(header, "PACK", 4) != 0) {
      return PackError("no PACK signature");
    }
    const uint32_t version = (uint32_t{header[4]} << 24) |
                             (uint32_t{header[5]} << 16) |
                             (uint32_t{header[6]} << 8) | header[7];
    if (version != 2 && version != 3) {
      return PackError(absl::StrCat("unsupported version ", version));
    }
    const uint32_t count = (uint32_t{header[8]} << 24) |
                           (uint32_t{header[9]} << 16) |
                           (uint32_t{header[10]} << 8) | header[11];
    reader.Consume(kPackHeaderSize);
    total_objects_.store(count);
    // A hostile count must not reserve gigabytes: grow as entries arrive.
    entries_.reserve(std::min<uint32_t>(count, 1 << 20));
    Inflater inflater;
    Sha1 object_sha1;
    std::vector<uint8_t> scratch(64 << 10);
    for (uint32_t i = 0; i < count; ++i) {
      Entry entry;
      CIAGENT_RETURN_IF_ERROR(ParseEntryHeader(reader, &entry));
      const bool whole = entry.packed_type != kOffsetDelta &&
                         entry.packed_type != kReferenceDelta;
      if (whole) HashObjectHeader(object_sha1, entry.packed_type, entry.size);
      CIAGENT_RETURN_IF_ERROR(InflateStream(reader, inflater, scratch, entry,
                                            whole ? &object_sha1 : nullptr));
      entry.end = reader.offset();
      entry.crc32 = reader.crc();
      if (whole) {
        entry.object_type = entry.packed_type;
        entry.oid = object_sha1.Finish();
        indexed_objects_.fetch_add(1);
      }
      entries_.push_back(entry);
      received_objects_.fetch_add(1);
    }
    const Oid checksum = reader.FinishPackChecksum();
    if (!reader.Ensure(kOidSize)) return PackError("truncated trailer");
    if (std::memcmp(reader.data(), checksum.data(), kOidSize) != 0) {
      return PackError("checksum mismatch");
    }
    reader.Consume(kOidSize, /*hash=*/false);
    pack_checksum_ = checksum;
    if (reader.available() > 0 || reader.Fill()) {
      return PackError("bytes after the trailer");
    }
    return absl::OkStatus();
  }

  absl::Status ParseEntryHeader(Reader& reader, Entry* entry) {
    entry->offset = reader.offset();
    reader.StartEntry();
    if (!reader.Ensure(1)) return PackError("truncated entry header");
    uint8_t byte = reader.Byte();
    entry->packed_type = (byte >> 4) & 7;
    uint64_t size = byte & 15;
    int shift = 4;
    while (byte & 0x80) {
      if (shift > 60 || !reader.Ensure(1)) {
        return PackError(absl::StrCat("bad entry header at ", entry->offset));
      }
      byte = reader.Byte();
      size |= static_cast<uint64_t>(byte & 0x7f) << shift;
      shift += 7;
    }
    entry->size = size;
    switch (entry->packed_type) {
      case kCommit:
      case kTree:
      case kBlob:
      case kTag:
        break;
      case kOffsetDelta: {
        if (!reader.Ensure(1)) return PackError("truncated delta offset");
        byte = reader.Byte();
        uint64_t distance = byte & 0x7f;
        while (byte & 0x80) {
          if (distance > (UINT64_MAX >> 8) || !reader.Ensure(1)) {
            return PackError("bad delta offset");
          }
          byte = reader.Byte();
          distance = ((distance + 1) << 7) | (byte & 0x7f);
        }
        if (distance == 0 || distance > entry->offset) {
          return PackError(absl::StrCat("delta at ", entry->offset,
                                        " points outside the pack"));
        }
        entry->base_offset = entry->offset - distance;
        break;
      }
      case kReferenceDelta: {
        if (!reader.Ensure(kOidSize)) return PackError("truncated delta base");
        ReferenceDelta delta;
        std::memcpy(delta.base.data(), reader.data(), kOidSize);
        delta.entry = static_cast<uint32_t>(entries_.size());
        reference_deltas_.push_back(delta);
        reader.Consume(kOidSize);
        break;
      }
      default:
        return PackError(absl::StrCat("entry at ", entry->offset,
                                      " has invalid type ",
                                      int{entry->packed_type}));
    }
    entry->data_offset = reader.offset();
    return absl::OkStatus();
  }

  // Inflates the entry's zlib stream from the reader to find its end; the
  // content goes to `sha1` when given, else nowhere.
  absl::Status InflateStream(Reader& reader, Inflater& inflater,
                             std::vector<uint8_t>& scratch, const Entry& entry,
                             Sha1* sha1) {
    inflater.Reset();
    z_stream& z = inflater.stream();
    uint64_t total = 0;
    while (true) {
      if (reader.available() == 0 && !reader.Fill()) {
        return PackError(absl::StrCat("entry at ", entry.offset, " truncated"));
      }
      z.next_in = const_cast<Bytef*>(reader.data());
      z.avail_in =
          static_cast<uInt>(std::min<size_t>(reader.available(), UINT32_MAX));
      z.next_out = scratch.data();
      z.avail_out = static_cast<uInt>(scratch.size());
      const uInt in_before = z.avail_in;
      const int rc = inflate(&z, Z_NO_FLUSH);
      const size_t produced = scratch.size() - z.avail_out;
      total += produced;
      if (total > entry.size) break;
      if (sha1 != nullptr && produced > 0)
        sha1->Update(scratch.data(), produced);
      reader.Consume(in_before - z.avail_in);
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return PackError(
            absl::StrCat("entry at ", entry.offset, ": zlib error ", rc));
      }
    }
    if (total != entry.size) {
      return PackError(absl::StrCat("entry at ", entry.offset, " inflates to ",
                                    total > entry.size ? "more" : "less",
                                    " than its stated ", entry.size, " bytes"));
    }
    return absl::OkStatus();
  }

  // ---- Phase 2: deltas, on several threads ----

  absl::Status MapPack() {
    mapped_size_ = static_cast<size_t>(written_);
    void* map = mmap(nullptr, mapped_size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (map == MAP_FAILED) return FileError("map", temp_path_, errno);
    mapped_ = static_cast<uint8_t*>(map);
    return absl::OkStatus();
  }

  // Links every delta to its base: offset deltas by offset (entries are in
  // offset order), reference deltas by id, sorted for lookups.
  absl::Status LinkDeltas() {
    const size_t n = entries_.size();
    std::vector<uint32_t> base_of(n, kNoEntry);
    children_begin_.assign(n + 1, 0);
    int64_t deltas = static_cast<int64_t>(reference_deltas_.size());
    for (size_t i = 0; i < n; ++i) {
      if (entries_[i].packed_type != kOffsetDelta) continue;
      ++deltas;
      const auto it = std::lower_bound(
          entries_.begin(), entries_.begin() + static_cast<ptrdiff_t>(i),
          entries_[i].base_offset,
          [](const Entry& e, uint64_t offset) { return e.offset < offset; });
      if (it == entries_.begin() + static_cast<ptrdiff_t>(i) ||
          it->offset != entries_[i].base_offset) {
        return PackError(absl::StrCat("delta at ", entries_[i].offset,
                                      " names no entry as its base"));
      }
      base_of[i] = static_cast<uint32_t>(it - entries_.begin());
      ++children_begin_[base_of[i] + 1];
    }
    total_deltas_.store(deltas);
    for (size_t i = 0; i < n; ++i) children_begin_[i + 1] += children_begin_[i];
    children_.resize(children_begin_[n]);
    std::vector<uint32_t> next(children_begin_.begin(),
                               children_begin_.end() - 1);
    for (size_t i = 0; i < n; ++i) {
      if (base_of[i] != kNoEntry)
        children_[next[base_of[i]]++] = static_cast<uint32_t>(i);
    }
    std::sort(reference_deltas_.begin(), reference_deltas_.end(),
              [](const ReferenceDelta& a, const ReferenceDelta& b) {
                return a.base < b.base;
              });
    reference_claimed_ =
        std::make_unique<std::atomic<bool>[]>(reference_deltas_.size());
    return absl::OkStatus();
  }

  // The deltas to apply to `entry` once it is resolved. Reference deltas
  // are claimed, so that an object packed twice does not resolve them twice.
  void ChildrenOf(uint32_t entry, std::vector<uint32_t>* out) {
    out->assign(children_.begin() + children_begin_[entry],
                children_.begin() + children_begin_[entry + 1]);
    if (reference_deltas_.empty()) return;
    const Oid& oid = entries_[entry].oid;
    auto it = std::lower_bound(
        reference_deltas_.begin(), reference_deltas_.end(), oid,
        [](const ReferenceDelta& d, const Oid& id) { return d.base < id; });
    for (; it != reference_deltas_.end() && it->base == oid; ++it) {
      const size_t index = static_cast<size_t>(it - reference_deltas_.begin());
      if (!reference_claimed_[index].exchange(true)) out->push_back(it->entry);
    }
  }

  // Inflates an entry's stream from the mapped pack (zlib counts in 32
  // bits: objects over 4 GiB take several calls).
  absl::StatusOr<ObjectBuffer> InflateEntry(Inflater& inflater,
                                            const Entry& entry) {
    CIAGENT_ASSIGN_OR_RETURN(ObjectBuffer out,
                             ObjectBuffer::OfSize(entry.size));
    inflater.Reset();
    z_stream& z = inflater.stream();
    const uint8_t* in = mapped_ + entry.data_offset;
    uint64_t in_left = entry.end - entry.data_offset;
    uint64_t out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      z.next_in = const_cast<Bytef*>(in);
      z.avail_in = static_cast<uInt>(std::min<uint64_t>(in_left, UINT32_MAX));
      z.next_out = out.bytes.get() + out_done;
      z.avail_out = static_cast<uInt>(
          std::min<uint64_t>(entry.size - out_done, UINT32_MAX));
      const uInt in_before = z.avail_in;
      const uInt out_before = z.avail_out;
      rc = inflate(&z, Z_NO_FLUSH);
      in += in_before - z.avail_in;
      in_left -= in_before - z.avail_in;
      out_done += out_before - z.avail_out;
      if (rc == Z_OK && in_before == z.avail_in && out_before == z.avail_out) {
        break;  // no progress: the stream ends early
      }
    }
    if (rc != Z_STREAM_END || out_done != entry.size) {
      return PackError(
          absl::StrCat("entry at ", entry.offset, " changed on disk"));
    }
    return out;
  }

  struct Frame {
    uint8_t type;
    ObjectBuffer data;
    std::vector<uint32_t> children;
    size_t next = 0;
  };

  // Resolves the delta tree under one whole object, depth first.
  absl::Status ResolveTree(uint32_t root, Inflater& inflater, Sha1& sha1) {
    std::vector<uint32_t> children;
    ChildrenOf(root, &children);
    if (children.empty()) return absl::OkStatus();
    std::vector<Frame> stack;
    CIAGENT_ASSIGN_OR_RETURN(ObjectBuffer data,
                             InflateEntry(inflater, entries_[root]));
    stack.push_back(Frame{entries_[root].object_type, std::move(data),
                          std::move(children)});
    while (!stack.empty()) {
      Frame& frame = stack.back();
      if (frame.next == frame.children.size()) {
        stack.pop_back();
        continue;
      }
      const uint32_t child = frame.children[frame.next++];
      Entry& entry = entries_[child];
      CIAGENT_ASSIGN_OR_RETURN(ObjectBuffer delta,
                               InflateEntry(inflater, entry));
      absl::StatusOr<ObjectBuffer> result = ApplyDelta(frame.data, delta);
      if (!result.ok()) {
        return Annotate(result.status(),
                        absl::StrCat("delta at ", entry.offset));
      }
      HashObjectHeader(sha1, frame.type, result->size);
      sha1.Update(result->bytes.get(), result->size);
      entry.oid = sha1.Finish();
      entry.object_type = frame.type;
      indexed_deltas_.fetch_add(1, std::memory_order_relaxed);
      indexed_objects_.fetch_add(1, std::memory_order_relaxed);
      ChildrenOf(child, &children);
      if (children.empty()) continue;
      if (frame.next == frame.children.size()) {
        // The last child takes its parent's place.
        frame.data = *std::move(result);
        frame.children.swap(children);
        frame.next = 0;
      } else {
        if (stack.size() >= kMaxDeltaDepth) {
          return PackError(
              absl::StrCat("delta chains deeper than ", kMaxDeltaDepth));
        }
        const uint8_t type = frame.type;
        stack.push_back(Frame{type, *std::move(result), std::move(children)});
      }
      if (cancelled_.load(std::memory_order_relaxed)) {
        return absl::CancelledError("indexing the pack was cancelled");
      }
    }
    return absl::OkStatus();
  }

  absl::Status ResolveDeltas() {
    std::vector<uint32_t> roots;
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].object_type != 0)
        roots.push_back(static_cast<uint32_t>(i));
    }
    const int threads = options_.threads > 0 ? options_.threads : UsableCpus();
    std::atomic<size_t> next_root{0};
    absl::Mutex mu;
    absl::Status error;     // guarded by mu
    int running = threads;  // guarded by mu
    auto work = [&] {
      Inflater inflater;
      Sha1 sha1;
      while (!cancelled_.load(std::memory_order_relaxed)) {
        const size_t i = next_root.fetch_add(1);
        if (i >= roots.size()) break;
        absl::Status status = ResolveTree(roots[i], inflater, sha1);
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          if (error.ok()) error = std::move(status);
          cancelled_.store(true);
        }
      }
      absl::MutexLock lock(&mu);
      --running;
    };
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i) workers.emplace_back(work);
    // This thread watches for cancellation: should_cancel runs here only.
    {
      absl::MutexLock lock(&mu);
      auto finished = [&running] { return running == 0; };
      while (!mu.AwaitWithTimeout(absl::Condition(&finished),
                                  absl::Milliseconds(50))) {
        mu.Unlock();
        if (options_.should_cancel && options_.should_cancel()) {
          cancelled_.store(true);
        }
        mu.Lock();
      }
    }
    for (std::thread& worker : workers) worker.join();
    {
      absl::MutexLock lock(&mu);
      if (!error.ok()) return error;
    }
    // Asked once more at the end: a stop requested while a small pack was
    // resolved in under one interval is still honoured.
    if (options_.should_cancel && options_.should_cancel()) {
      cancelled_.store(true);
    }
    if (cancelled_.load()) {
      return absl::CancelledError("indexing the pack was cancelled");
    }
    const int64_t unresolved =
        static_cast<int64_t>(entries_.size()) - indexed_objects_.load();
    if (unresolved > 0) {
      return PackError(
          absl::StrCat(unresolved,
                       " deltas have no base in the pack (thin packs are "
                       "not supported)"));
    }
    return absl::OkStatus();
  }

  // ---- Phase 3: the .idx, and both files in place ----

  absl::StatusOr<std::string> WriteIndexAndRename() {
    const size_t n = entries_.size();
    std::vector<uint32_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
    std::sort(order.begin(), order.end(), [this](uint32_t a, uint32_t b) {
      return entries_[a].oid < entries_[b].oid;
    });
    for (size_t i = 1; i < n; ++i) {
      if (entries_[order[i]].oid == entries_[order[i - 1]].oid) {
        return PackError(absl::StrCat("object ", Hex(entries_[order[i]].oid),
                                      " is packed twice"));
      }
    }
    std::string index("\377tOc", 4);
    PutBigEndian32(&index, 2);
    uint32_t fanout[256] = {};
    for (const Entry& entry : entries_) ++fanout[entry.oid[0]];
    uint32_t cumulative = 0;
    for (uint32_t count : fanout) {
      cumulative += count;
      PutBigEndian32(&index, cumulative);
    }
    for (uint32_t i : order) {
      index.append(reinterpret_cast<const char*>(entries_[i].oid.data()),
                   kOidSize);
    }
    for (uint32_t i : order) PutBigEndian32(&index, entries_[i].crc32);
    std::string large_offsets;
    uint32_t large_count = 0;
    for (uint32_t i : order) {
      const uint64_t offset = entries_[i].offset;
      if (offset < 0x80000000u) {
        PutBigEndian32(&index, static_cast<uint32_t>(offset));
      } else {
        PutBigEndian32(&index, 0x80000000u | large_count++);
        PutBigEndian32(&large_offsets, static_cast<uint32_t>(offset >> 32));
        PutBigEndian32(&large_offsets, static_cast<uint32_t>(offset));
      }
    }
    index += large_offsets;
    index.append(reinterpret_cast<const char*>(pack_checksum_.data()),
                 kOidSize);
    Sha1 sha1;
    sha1.Update(index.data(), index.size());
    const Oid index_checksum = sha1.Finish();
    index.append(reinterpret_cast<const char*>(index_checksum.data()),
                 kOidSize);

    const std::string name = Hex(pack_checksum_);
    const std::string base = (fs::path(pack_dir_) / ("pack-" + name)).string();
    const std::string index_temp = temp_path_ + ".idx";
    const int index_fd = ::open(index_temp.c_str(),
                                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
    if (index_fd < 0) return FileError("create", index_temp, errno);
    absl::Cleanup remove_index_temp = [&] { ::unlink(index_temp.c_str()); };
    absl::Status written =
        WriteAll(index_fd, index.data(), index.size(), index_temp);
    if (::close(index_fd) != 0 && written.ok()) {
      written = FileError("close", index_temp, errno);
    }
    CIAGENT_RETURN_IF_ERROR(written);
    ::fchmod(fd_, 0444);
    if (::rename(temp_path_.c_str(), (base + ".pack").c_str()) != 0) {
      return FileError("rename", temp_path_, errno);
    }
    committed_ = true;
    if (::rename(index_temp.c_str(), (base + ".idx").c_str()) != 0) {
      const absl::Status status = FileError("rename", index_temp, errno);
      ::unlink((base + ".pack").c_str());
      return status;
    }
    std::move(remove_index_temp).Cancel();
    return name;
  }

  static std::string Hex(const Oid& oid) {
    return absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(oid.data()), oid.size()));
  }

  const std::string pack_dir_;
  const PackIndexerOptions options_;
  const int fd_;
  const std::string temp_path_;
  bool committed_ = false;

  absl::Mutex mu_;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  bool input_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status parser_status_ ABSL_GUARDED_BY(mu_);
  std::thread parser_;

  // Written by the parser; read after it was joined.
  std::vector<Entry> entries_;
  std::vector<ReferenceDelta> reference_deltas_;
  Oid pack_checksum_{};

  uint8_t* mapped_ = nullptr;
  size_t mapped_size_ = 0;
  std::vector<uint32_t> children_begin_;
  std::vector<uint32_t> children_;
  std::unique_ptr<std::atomic<bool>[]> reference_claimed_;
  std::atomic<bool> cancelled_{false};

  std::atomic<int64_t> total_objects_{0};
  std::atomic<int64_t> received_objects_{0};
  std::atomic<int64_t> indexed_objects_{0};
  std::atomic<int64_t> total_deltas_{0};
  std::atomic<int64_t> indexed_deltas_{0};
  std::atomic<int64_t> received_bytes_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<PackIndexer>> PackIndexer::Create(
    std::string pack_dir, PackIndexerOptions options) {
  std::string temp = (fs::path(pack_dir) / "tmp_pack_XXXXXX").string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return FileError("create a temporary pack in", pack_dir, errno);
  return std::unique_ptr<PackIndexer>(
      new PackIndexerImpl(std::move(pack_dir), std::move(options), fd, temp));
}

}  // namespace ciagent
