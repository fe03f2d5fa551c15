#!/usr/bin/env python3
"""Checks that libciagent's modules include only modules below them.

The layers, bottom up (docs/architecture.md, "Layers"):

    base <- {job, net} <- {queue, git, oci, cache, metrics}
         <- {pipeline, webhook} <- image <- agent <- tools

A module may include its own headers and those of any lower layer; modules
of one layer are siblings and never include each other. No other module and
no tool includes a module's internal/ headers (they are not installed); tests
and benchmarks may, to reach the units they measure, and may include anything. A module folder missing from
LAYERS is an error too, so a new module has to be placed before it builds.

    check_layering.py [SOURCE_ROOT]   exit 0 when clean, 1 with one line per
                                      violation, 2 on bad usage
    check_layering.py --self-test     proves the check fails on violations
"""

import os
import re
import sys
import tempfile

LAYERS = [
    ["base"],
    ["job", "net"],
    ["queue", "git", "oci", "cache", "metrics"],
    ["pipeline", "webhook"],
    ["image"],
    ["agent"],
]
RANK = {module: rank for rank, names in enumerate(LAYERS) for module in names}
INCLUDE = re.compile(r'^\s*#\s*include\s+"ciagent/([^/"]+)/([^"]+)"')
SOURCE_SUFFIXES = (".h", ".cc")


def sources(root, top):
    for folder, _, names in os.walk(os.path.join(root, top)):
        for name in sorted(names):
            if name.endswith(SOURCE_SUFFIXES):
                yield os.path.join(folder, name)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            match = INCLUDE.match(line)
            if match:
                yield number, match.group(1), match.group(2)


def violations(root):
    lib = os.path.join(root, "lib", "ciagent")
    found = []
    for entry in sorted(os.listdir(lib)):
        if os.path.isdir(os.path.join(lib, entry)) and entry not in RANK:
            found.append(f"lib/ciagent/{entry}: a module missing from the "
                         "layer table (tests/layering/check_layering.py)")
    for top in ("lib", "tools", "tests", "bench"):
        for path in sources(root, top):
            rel = os.path.relpath(path, root)
            parts = rel.split(os.sep)
            owner = parts[2] if top == "lib" and len(parts) > 3 else None
            for number, module, rest in includes(path):
                where = f"{rel}:{number}"
                if module not in RANK:
                    found.append(f"{where}: includes unknown module "
                                 f"ciagent/{module}")
                    continue
                if (rest.startswith("internal/") and module != owner
                        and top in ("lib", "tools")):
                    found.append(f"{where}: includes ciagent/{module}/{rest}, "
                                 f"internal to {module}")
                if owner is None or owner not in RANK or module == owner:
                    continue
                if RANK[module] >= RANK[owner]:
                    relation = ("a sibling" if RANK[module] == RANK[owner]
                                else "a module above it")
                    found.append(f"{where}: {owner} includes ciagent/{module}/"
                                 f"{rest}, {relation}")
    return found


def self_test():
    cases = {
        "lib/ciagent/base/clock.h": ('#include "ciagent/queue/job_queue.h"',
                                     "a module above it"),
        "lib/ciagent/git/fetch.cc": ('#include "ciagent/oci/push.h"',
                                     "a sibling"),
        "tools/x/main.cc": ('#include "ciagent/git/internal/pack.h"',
                            "internal to git"),
        "lib/ciagent/pipeline/p.cc": ('#include "ciagent/git/internal/p.h"',
                                      "internal to git"),
        "lib/ciagent/agent/a.cc": ('#include "ciagent/frobs/x.h"',
                                   "unknown module"),
    }
    failures = 0
    with tempfile.TemporaryDirectory() as root:
        for names in LAYERS:
            for module in names:
                os.makedirs(os.path.join(root, "lib", "ciagent", module))
        os.makedirs(os.path.join(root, "tests"))
        with open(os.path.join(root, "tests", "t.cc"), "w") as f:
            f.write('#include "ciagent/git/internal/pack.h"\n')
        clean = os.path.join(root, "lib", "ciagent", "agent", "ok.cc")
        with open(clean, "w") as f:
            f.write('#include "ciagent/base/log.h"\n'
                    '#include "ciagent/agent/internal/x.h"\n'
                    '#include "ciagent/pipeline/pipeline.h"\n')
        if violations(root):
            print("self-test: a clean tree was reported:", violations(root))
            failures += 1
        for rel, (line, expected) in cases.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(line + "\n")
            found = violations(root)
            if len(found) != 1 or expected not in found[0]:
                print(f"self-test: {rel} with {line}: expected one "
                      f"violation naming '{expected}', got {found}")
                failures += 1
            os.remove(path)
        os.makedirs(os.path.join(root, "lib", "ciagent", "extra"))
        found = violations(root)
        if len(found) != 1 or "missing from the layer table" not in found[0]:
            print(f"self-test: an unplaced module was not reported: {found}")
            failures += 1
    print("self-test:", "failed" if failures else "ok")
    return 1 if failures else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) > 2 or argv[1:2] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 2
    root = argv[1] if len(argv) == 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")
    found = violations(root)
    for line in found:
        print(line)
    print(f"layering: {len(found)} violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
