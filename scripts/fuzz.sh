#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets of fuzz/ and runs each for SECONDS
# (default 60), one after the other, with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# - Installs cargo-fuzz (pinned below) from crates.io when it is missing.
# - libFuzzer needs nightly-only rustc flags; on the stable toolchain they
#   are allowed by RUSTC_BOOTSTRAP=1, set here for the fuzz build only.
# - No sanitizer by default (FUZZ_SANITIZER=address for ASan): tether is
#   safe Rust but for one unsafe `from_utf8_unchecked`, whose input the
#   targets check with `std`, and ASan slows the targets 3-20 times. The
#   build is a release build with debug assertions on (cargo-fuzz's
#   default), so the `debug_assert!`s of the code run too.
# - The corpora grow in fuzz/corpus/<target> (not committed), starting from
#   the seeds in fuzz/seeds/<target>; a crash is written to
#   fuzz/artifacts/<target>/ (reproduce it with
#   `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>` in fuzz/).
#
# Prints the executions each target reached; exits non-zero if any target
# crashed (after running the others).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
echo "fuzz: built in $(($(date +%s) - start)) s"

failed=()
summary=()
mkdir -p target/fuzz-logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="target/fuzz-logs/$t.log"
    echo "fuzz: $t for ${seconds} s"
    status=0
    cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: CRASHED after ${execs:-?} executions")
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
        tail -5 "$log"
    else
        summary+=("$t: ${execs:-?} executions (${rate:-?}/s)")
    fi
done

echo "fuzz: ${seconds} s per target, $(($(date +%s) - start)) s in all"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
