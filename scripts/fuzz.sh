#!/usr/bin/env bash
# Fuzzes page-text extraction (indexer/fuzz, target page_text) with cargo fuzz on nightly.
#
#   scripts/fuzz.sh [SECONDS] [JOBS]     default: 600 s, 1 job
#
# Seeds the corpus (indexer/fuzz/corpus/page_text, git-ignored) with every PDF under 64 KiB
# from datasets/samples and the shared qpdf test suite, then runs libFuzzer with a PDF
# dictionary, a 10 s per-input time limit and a 2 GiB memory limit, in libFuzzer's fork mode
# (JOBS processes) so that it goes on past a crash. Crashes land in
# indexer/fuzz/artifacts/page_text; copy each into indexer/tests/fuzz-regressions/ (the test
# indexer/tests/fuzz_regressions.rs replays them), named after its cause. A crash in a
# dependency that cannot be fixed here also goes into the target's KNOWN table (file and line
# of the panic), so that later runs let it unwind into the extractor's net and look further.
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
jobs=${2:-1}
corpus=indexer/fuzz/corpus/page_text
mkdir -p "$corpus"
shared=${FOLIO_SHARED_DATA:-../shared/data}
for dir in datasets/samples indexer/tests/fuzz-regressions "$shared/pdf-qpdf" "$shared/pdf-samples"; do
    [ -d "$dir" ] || continue
    find "$dir" -type f -size -64k \( -name '*.pdf' -o -path '*fuzz-regressions*' \) \
        -exec cp -n {} "$corpus/" \;
done
cd indexer/fuzz
cargo +nightly fuzz run page_text -O -- \
    -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -dict=pdf.dict -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -max_total_time="$seconds" -print_final_stats=1
