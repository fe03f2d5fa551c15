#!/usr/bin/env bash
# Source fetch, libciagent against `git clone`, over local HTTP: one larger
# repository (>= 50 MB packed, >= 1000 commits) served by git http-backend,
# and in one run, rounds in alternation of
#   git clone   plain `git clone` of the repository (with checkout);
#   cold        bench/fetch_source with an empty cache directory: the mirror
#               is cloned, then the work tree checked out from it;
#   warm        bench/fetch_source again with that cache, after one new
#               commit was added to the served repository, into the work
#               directory of cold, as an agent's next job finds it: an
#               incremental fetch, then the previous tree updated in place;
#   warm, empty another new commit, then bench/fetch_source with the cache
#               into a new, empty directory (an agent without a persistent
#               work directory): incremental fetch and a full checkout;
#   no cache    bench/fetch_source without a cache directory.
#   index       the pack alone, no transfer: PackIndexer, libgit2, git index-pack.
# It prints the medians, cold / git clone (target <= 1.0) and cold / warm
# (target >= 10) with PASS/FAIL.
#
#   scripts/bench-fetch.sh [BUILD_DIR]      (default: build)
#   CIAGENT_BENCH_HTTPS=1 scripts/bench-fetch.sh   the same over HTTPS: a
#       certificate for IP:127.0.0.1 from a CA made for the run, trusted by
#       git through GIT_SSL_CAINFO and by libciagent (OpenSSL) through
#       SSL_CERT_FILE
#
# The repository is generated, reproducibly, from the text files (headers,
# Python and Perl modules, scripts) of Debian packages that every machine
# with the build dependencies has (scripts/bootstrap.sh), taken in sorted
# order: 1200 commits, each adding the next files and rewriting runs of lines
# in files already present with lines pasted from elsewhere in the corpus.
# Authors, dates and choices are fixed, so the same package versions give the
# same commits. It is cached, keyed by the generator version and the package
# versions, under ${XDG_CACHE_HOME:-$HOME/.cache}/libciagent-bench/, and each
# run serves a copy of it.
#
# Page caches are not dropped (that needs root and would measure the disk):
# every side reads a served repository that is already in memory and writes
# its work tree into the page cache; `sync` runs before each timed step.
# Each step writes into a new directory, removed when the run ends: about
# 0.8 GB per round under TMPDIR.
#
# Environment: CIAGENT_BENCH_ROUNDS (rounds per side, default 3).
# Exit status: 0 when all sides were measured (whether or not the targets are
# met), 1 when a step failed, 2 when a tool or package is missing.
# docs/performance.md explains the method and keeps the figures.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
build_dir=${1:-build}
rounds=${CIAGENT_BENCH_ROUNDS:-3}
https=${CIAGENT_BENCH_HTTPS:-0}
target_cold_vs_git=1.0
target_cold_vs_warm=10

# Bump when the generator below changes: the cache key includes it.
generator_version=1
commits=1200
edits_per_commit=20
min_pack_bytes=$((50 * 1024 * 1024))
# The corpus: Debian 12 packages pulled in by scripts/bootstrap.sh (directly
# or as dependencies of g++, python3, git, meson, clang and the -dev
# packages). Only their files under /usr/include, /usr/lib, /usr/share/perl*
# and /usr/src that contain no NUL byte are taken.
corpus_packages=(
  libc6-dev linux-libc-dev libstdc++-12-dev libclang-common-14-dev
  libabsl-dev libssl-dev libcurl4-openssl-dev libgit2-dev libmbedtls-dev
  libpcre2-dev libssh2-1-dev zlib1g-dev libhiredis-dev libsimdjson-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpython3.11-minimal libpython3.11-stdlib meson
  perl-modules-5.36 libperl5.36 git
)

need_tools " (scripts/bootstrap.sh installs everything)" \
  git python3 dpkg-query meson ninja
if ! package_versions=$(dpkg-query -W -f='${Package}=${Version}\n' \
    "${corpus_packages[@]}" 2>&1); then
  echo "bench-fetch: a corpus package is missing (scripts/bootstrap.sh installs them):" >&2
  echo "$package_versions" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ciagent-bench-fetch.XXXXXX")
cleanup_on_exit "$work"

# Neither side reads the user's or the system's git configuration.
git_clean() {
  HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" \
    GIT_CONFIG_NOSYSTEM=1 git "$@"
}
mkdir -p "$work/home"

# --- build ---------------------------------------------------------------------
ensure_bench_target "$build_dir" bench/fetch_source bench/pack_index
fetch_source="$(cd "$build_dir" && pwd)/bench/fetch_source"
pack_index="$(cd "$build_dir" && pwd)/bench/pack_index"

# --- the repository -----------------------------------------------------------------
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/libciagent-bench"
key=$(printf 'generator=%s commits=%s edits=%s\n%s\n' "$generator_version" \
  "$commits" "$edits_per_commit" "$package_versions" | sha256sum | cut -c1-16)
cached="$cache_root/fetch-$key"

generate() {
  local dest=$1 list="$work/corpus.list"
  dpkg-query -L "${corpus_packages[@]}" |
    grep -E '^/usr/(include|lib|share/perl5?|src)/' | LC_ALL=C sort -u >"$list"
  git_clean init --quiet --bare --initial-branch=main "$dest/big.git"
  # Writes a git fast-import stream. Commit i adds the next files of the
  # corpus and, from the second commit on, makes edits_per_commit edits: each
  # replaces a run of lines of a file already in the tree with about as many
  # consecutive lines of the corpus read backwards (code moved in from
  # elsewhere), mostly a few lines, sometimes hundreds. random.random() is
  # guaranteed to give the same sequence for a seed on every Python 3.
  python3 - "$list" "$commits" "$edits_per_commit" "$generator_version" <<'PY' |
import hashlib
import os
import random
import sys

list_path, commits, edits_per_commit, seed = sys.argv[1:5]
commits, edits_per_commit = int(commits), int(edits_per_commit)
EPOCH = 1577836800  # 2020-01-01T00:00:00Z
STEP = 6 * 3600 + 17 * 60
AUTHOR = b"Bench Author <author@bench.invalid>"
COMMITTER = b"Bench Committer <committer@bench.invalid>"

corpus = []
with open(list_path, "rb") as paths:
    for line in paths:
        src = line.rstrip(b"\n")
        if os.path.islink(src) or not os.path.isfile(src):
            continue
        with open(src, "rb") as f:
            data = f.read()
        if data and b"\0" not in data:
            corpus.append((src[len(b"/usr/"):], data))

rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))


def pick(n):
    return min(int(rng.random() * n), n - 1)


donor = [l for _, data in reversed(corpus)
         for l in data.splitlines(keepends=True)]
donor_at = 0


def take(k):
    global donor_at
    lines = donor[donor_at:donor_at + k]
    donor_at = (donor_at + k) % len(donor)
    return lines


out = sys.stdout.buffer
present = []
content = {}
per_commit = -(-len(corpus) // commits)
next_file = 0
pasted = 0
for i in range(commits):
    batch = corpus[next_file:next_file + per_commit]
    next_file += len(batch)
    changed = {}
    for path, data in batch:
        present.append(path)
        content[path] = changed[path] = data
    edits = edits_per_commit if i > 0 else 0
    for _ in range(edits):
        path = present[pick(len(present))]
        lines = content[path].splitlines(keepends=True)
        r = rng.random()
        k = 1 + int(r * r * 600)
        d = min(len(lines), max(0, k + pick(21) - 10))
        at = pick(len(lines) - d + 1)
        new = take(k)
        lines[at:at + d] = new
        pasted += sum(map(len, new))
        content[path] = changed[path] = b"".join(lines)
    parts = []
    if batch:
        parts.append("add %d files under %s" %
                     (len(batch), os.path.dirname(batch[0][0]).decode()))
    if edits:
        parts.append("update %d files" % edits)
    msg = ("; ".join(parts).capitalize() + "\n").encode()
    when = EPOCH + i * STEP
    out.write(b"commit refs/heads/main\n")
    out.write(b"author %s %d +0000\n" % (AUTHOR, when))
    out.write(b"committer %s %d +0000\n" % (COMMITTER, when + 60))
    out.write(b"data %d\n%s" % (len(msg), msg))
    for path in sorted(changed):
        data = changed[path]
        out.write(b"M 100644 inline %s\ndata %d\n" % (path, len(data)))
        out.write(data)
        out.write(b"\n")
    out.write(b"\n")
sys.stderr.write("bench-fetch: corpus of %d files, %.1f MB; %.1f MB pasted\n"
                 % (len(corpus), sum(len(d) for _, d in corpus) / 1e6,
                    pasted / 1e6))
PY
    git_clean -C "$dest/big.git" fast-import --quiet
  # fast-import deltas each blob against the one before it in the stream;
  # a full repack finds real delta bases, as a server's `git gc` would.
  git_clean -C "$dest/big.git" repack -a -d -f -q
  local pack_kib
  pack_kib=$(git_clean -C "$dest/big.git" count-objects -v | awk '$1 == "size-pack:" { print $2 }')
  if ((pack_kib * 1024 < min_pack_bytes)); then
    echo "bench-fetch: generated pack is only $pack_kib KiB (< 50 MiB)" >&2
    exit 1
  fi
}

if [[ ! -d $cached/big.git ]]; then
  echo "bench-fetch: generating the repository (once; cached in $cached)"
  mkdir -p "$cache_root"
  staging=$(mktemp -d "$cache_root/.staging.XXXXXX")
  lib_dirs+=("$staging")
  start=$(date +%s)
  generate "$staging"
  echo "bench-fetch: generated in $(($(date +%s) - start)) s"
  # Another run may have won the race; its copy is as good as ours.
  mv -T "$staging" "$cached" 2>/dev/null || true
  rm -rf "$staging"
fi

serve_root="$work/serve"
served="$serve_root/big.git"
mkdir -p "$serve_root"
cp -a "$cached/big.git" "$served"
commit_count=$(git_clean -C "$served" rev-list --count main)
pack_size=$(git_clean -C "$served" count-objects -vH | awk '$1 == "size-pack:" { print $2, $3 }')
object_count=$(git_clean -C "$served" count-objects -v | awk '$1 == "in-pack:" { print $2 }')
read -r tree_files tree_bytes < <(git_clean -C "$served" ls-tree -r -l main |
  awk '{ n++; s += $4 } END { print n, s }')
echo "bench-fetch: repository: $commit_count commits, $object_count objects," \
  "pack $pack_size; work tree $tree_files files, $((tree_bytes / 1000000)) MB;" \
  "main at $(git_clean -C "$served" rev-parse main)"

# Adds one commit to main of the served repository (a new 53 KB file and a
# one-line one), straight into the bare repository, as a push would. The
# argument, a number, makes each commit different.
add_commit() {
  local round=$1
  local when=$((1577836800 + 1300 * 86400 + round * 3600))
  {
    printf 'commit refs/heads/main\n'
    printf 'author Bench Author <author@bench.invalid> %d +0000\n' "$when"
    printf 'committer Bench Committer <committer@bench.invalid> %d +0000\n' "$when"
    printf 'data <<EOF\nRound %d\nEOF\n' "$round"
    printf 'from refs/heads/main^0\n'
    printf 'M 100644 inline bench/round-%d.txt\ndata <<EOF\n' "$round"
    seq -f "round $round line %g" 3000
    printf 'EOF\n'
    printf 'M 100644 inline BENCH_ROUND\ndata <<EOF\n%d\nEOF\n\n' "$round"
  } | git_clean -C "$served" fast-import --quiet
}

# --- the server ---------------------------------------------------------------------
server_args=()
scheme=http
if [[ $https == 1 ]]; then
  # A CA and a server certificate for the address, as an operator makes
  # them for an IP-addressed git server.
  tls="$work/tls"
  mkdir -p "$tls"
  printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = bench CA\n' \
    >"$tls/ca.cnf"
  printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = 127.0.0.1\n[ext]\nsubjectAltName = IP:127.0.0.1\n' \
    >"$tls/server.cnf"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout "$tls/ca.key" -config "$tls/ca.cnf" -days 2 \
    -addext basicConstraints=critical,CA:TRUE -out "$tls/ca.pem" 2>/dev/null
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout "$tls/server.key" -config "$tls/server.cnf" -extensions ext \
    -days 2 -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -out "$tls/server.pem" \
    2>/dev/null
  server_args=(--cert "$tls/server.pem" --key "$tls/server.key")
  scheme=https
  export GIT_SSL_CAINFO="$tls/ca.pem" SSL_CERT_FILE="$tls/ca.pem"
fi
if ! start_git_server "$work" "$serve_root" 0 "${server_args[@]}"; then
  echo "bench-fetch: git_http_server.py did not start:" >&2
  cat "$work/git-server.err" >&2
  exit 1
fi
port=$git_port
url="$scheme://127.0.0.1:$port/big.git"

# --- the rounds -------------------------------------------------------------------------
# side, round, seconds, received bytes, objects, transfer s, checkout s,
# download s (the part of the transfer until the last object arrived)
results="$work/results.tsv"
: >"$results"

# Runs "$@" and appends one line to the results; the clock is the shell's,
# around the whole process, for every side alike.
timed() {
  local side=$1 round=$2
  shift 2
  sync
  local t0 t1
  t0=$(date +%s%N)
  if ! "$@" >"$work/out" 2>"$work/err"; then
    echo "bench-fetch: $side (round $round) failed: $*" >&2
    cat "$work/err" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  local bytes=- objects=- transfer=- checkout=- download=-
  if grep -q '"received_bytes"' "$work/out"; then
    bytes=$(sed -n 's/.*"received_bytes":\([0-9]*\).*/\1/p' "$work/out")
    objects=$(sed -n 's/.*"received_objects":\([0-9]*\).*/\1/p' "$work/out")
    transfer=$(sed -n 's/.*"transfer_seconds":\([0-9.]*\).*/\1/p' "$work/out")
    checkout=$(sed -n 's/.*"checkout_seconds":\([0-9.]*\).*/\1/p' "$work/out")
    download=$(sed -n 's/.*"download_seconds":\([0-9.]*\).*/\1/p' "$work/out")
  fi
  local seconds
  seconds=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$round" "$seconds" \
    "$bytes" "$objects" "$transfer" "$checkout" "$download" >>"$results"
  printf '  %-10s %7s s' "$side" "$seconds"
  [[ $transfer == - ]] ||
    printf '  (transfer %s s of which download %s s, checkout %s s; %s bytes, %s objects)' \
      "$transfer" "$download" "$checkout" "$bytes" "$objects"
  printf '\n'
}

expect_head() {
  local dest=$1 commit=$2 head
  head=$(git_clean -C "$dest" rev-parse HEAD)
  if [[ $head != "$commit" ]]; then
    echo "bench-fetch: $dest is at $head, expected $commit" >&2
    exit 1
  fi
}

# Every step writes into a directory of its own, and nothing is deleted
# before the run ends: ext4 scans past recently freed inodes when it
# allocates new ones, which made a checkout right after `rm -rf` of the
# previous one up to 1.5 s slower, whichever side came next.
run_git_clone() {
  timed git "$round" git_clean clone --quiet "$url" "$dir/git"
  expect_head "$dir/git" "$head"
}

run_cold() {
  mkdir "$dir/cache"
  timed cold "$round" env HOME="$work/home" \
    "$fetch_source" "$url" main "$head" "$dir/cold" "$dir/cache"
  expect_head "$dir/cold" "$head"
}

# Other work on the machine slows both sides; the load average says how much.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-fetch: $rounds rounds, served over $scheme on 127.0.0.1:$port; load average $load_start"
for round in $(seq "$rounds"); do
  echo " round $round"
  dir="$work/round-$round"
  mkdir "$dir"
  head=$(git_clean -C "$served" rev-parse main)
  # git clone and cold swap places every round, so that neither always
  # runs first.
  if ((round % 2)); then
    run_git_clone
    run_cold
  else
    run_cold
    run_git_clone
  fi
  # The agent's next job: same cache, same work directory.
  add_commit $((2 * round - 1))
  head=$(git_clean -C "$served" rev-parse main)
  timed warm "$round" env HOME="$work/home" \
    "$fetch_source" "$url" main "$head" "$dir/cold" "$dir/cache"
  expect_head "$dir/cold" "$head"
  if ! grep -q '"warm":true,"reused":true' "$work/out"; then
    echo "bench-fetch: the warm fetch did not find its mirror and work tree" >&2
    exit 1
  fi
  # The updated tree must be what a fresh checkout gives: nothing modified,
  # untracked or ignored.
  if [[ -n $(git_clean -C "$dir/cold" status --porcelain --ignored) ]]; then
    echo "bench-fetch: the work tree updated in place differs from $head:" >&2
    git_clean -C "$dir/cold" status --short --ignored >&2
    exit 1
  fi
  # A job on an agent whose work directory is new: same cache only.
  add_commit $((2 * round))
  head=$(git_clean -C "$served" rev-parse main)
  timed warmempty "$round" env HOME="$work/home" \
    "$fetch_source" "$url" main "$head" "$dir/warm" "$dir/cache"
  expect_head "$dir/warm" "$head"
  if ! grep -q '"warm":true,"reused":false' "$work/out"; then
    echo "bench-fetch: the warm fetch into an empty directory did not find its mirror" >&2
    exit 1
  fi
  timed nocache "$round" env HOME="$work/home" \
    "$fetch_source" "$url" main "$head" "$dir/nocache"
  expect_head "$dir/nocache" "$head"
  # The floor under any warm path: git writing the same work tree from a
  # local repository, no transfer at all.
  git_clean clone --quiet --no-checkout --shared "$served" "$dir/checkout"
  timed checkout "$round" git_clean -C "$dir/checkout" checkout --quiet --force main
  expect_head "$dir/checkout" "$head"
  # Indexing alone, no transfer: the served repository's pack (the largest)
  # indexed by libciagent's PackIndexer (what a cold fetch now uses), by
  # libgit2's indexer (what it used before) and by git index-pack, which
  # must write the same .idx.
  pack=$(find "$served/objects/pack" -name '*.pack' -printf '%s %p\n' |
    sort -rn | head -n 1 | cut -d' ' -f2-)
  mkdir "$dir/idx-ours" "$dir/idx-libgit2" "$dir/idx-git"
  timed idxours "$round" "$pack_index" ciagent "$pack" "$dir/idx-ours"
  timed idxlibgit2 "$round" "$pack_index" libgit2 "$pack" "$dir/idx-libgit2"
  timed idxgit "$round" git_clean index-pack -o "$dir/idx-git/pack.idx" "$pack"
  if ! cmp -s "$dir/idx-git/pack.idx" "$dir"/idx-ours/*.idx; then
    echo "bench-fetch: PackIndexer wrote another .idx than git index-pack" >&2
    exit 1
  fi
done

# --- the table ------------------------------------------------------------------------------
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
awk -F'\t' -v rounds="$rounds" -v git_version="$(git --version)" \
  -v load="$load_start at start, $load_end at end" -v cores="$(nproc)" \
  -v load1_start="${load_start%% *}" -v load1_end="${load_end%% *}" \
  -v t_git="$target_cold_vs_git" -v t_warm="$target_cold_vs_warm" '
function median(side,   n, i, j, v, t) {
  n = 0
  for (i = 1; i <= count[side]; i++) v[++n] = s[side, i]
  for (i = 2; i <= n; i++) {
    t = v[i]
    for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]
    v[j + 1] = t
  }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
  s[$1, ++count[$1]] = $3
  if ($4 != "-") bytes[$1] = $4
  if ($6 != "-") { s[$1 "/transfer", ++count[$1 "/transfer"]] = $6
                   s[$1 "/checkout", ++count[$1 "/checkout"]] = $7
                   s[$1 "/download", ++count[$1 "/download"]] = $8 }
}
function phases(side) {
  return sprintf("   (transfer %.2f s: download %.2f s; checkout %.2f s)",
                 median(side "/transfer"), median(side "/download"),
                 median(side "/checkout"))
}
END {
  g = median("git"); c = median("cold"); w = median("warm"); n = median("nocache")
  e = median("warmempty"); k = median("checkout")
  printf "\nfull clone with checkout, median of %d rounds; load average %s\n",
         rounds, load
  printf "%-40s%9.2f s\n", git_version " clone", g
  printf "%-40s%9.2f s%s\n", "libciagent cold (empty cache)", c, phases("cold")
  printf "%-40s%9.2f s%s\n", "libciagent warm (+1 commit, same dir)", w, phases("warm")
  printf "%-40s%9.2f s%s\n", "libciagent warm (+1 commit, empty dir)", e,
         phases("warmempty")
  printf "%-40s%9.2f s%s\n", "libciagent without cache", n, phases("nocache")
  printf "%-40s%9.2f s\n", "git checkout alone (no transfer)", k
  printf "%-40s%9.2f s\n", "index the pack: libciagent PackIndexer", median("idxours")
  printf "%-40s%9.2f s\n", "index the pack: libgit2 indexer", median("idxlibgit2")
  printf "%-40s%9.2f s\n", "index the pack: git index-pack", median("idxgit")
  printf "%-40s%9.3f x   target <= %s: %s\n", "cold / git clone", c / g, t_git,
         (c / g <= t_git) ? "PASS" : "FAIL"
  printf "%-40s%9.1f x   target >= %s: %s\n", "cold / warm", c / w, t_warm,
         (c / w >= t_warm) ? "PASS" : "FAIL"
  printf "%-40s%9.1f x\n", "cold / warm into an empty dir", c / e
  printf "%-40s%9.2f x\n", "without cache / git clone", n / g
  printf "%-40s%9.1f MB cold, %.2f MB warm\n", "received", bytes["cold"] / 1e6,
         bytes["warm"] / 1e6
  # Both sides index and check out on every core; other work on the
  # machine takes cores from both, unevenly from round to round.
  if (load1_start + 0 >= cores || load1_end + 0 >= cores)
    printf "note: load average reached the core count (%d): the figures " \
           "vary more than on an idle machine\n", cores
}' "$results"
