#!/bin/sh
# Runs each libFuzzer target for a bounded time on a fresh copy of its
# seed corpus (tests/fuzz/corpus/NAME for the target fuzz_NAME), and fails
# if any of them found a crash, a leak or a timeout.
#   tests/fuzz/run.sh OUTDIR SECONDS TARGET...
# The corpus a run grew is left in OUTDIR/corpus/NAME, its log in
# OUTDIR/NAME.log and an input that failed in OUTDIR/artifacts/.
set -u
out=$1
seconds=$2
shift 2
mkdir -p "$out/artifacts"
failed=""
for target in "$@"; do
  name=${target##*/fuzz_}
  corpus=$out/corpus/$name
  rm -rf "$corpus"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$name"/* "$corpus"/
  echo "fuzz $name: $seconds s"
  # -timeout: one input may take 10 s; -rss_limit_mb: the whole process.
  if ASAN_OPTIONS=detect_leaks=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
       -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" \
       "$corpus" >"$out/$name.log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units)' "$out/$name.log" |
      sed "s/^/fuzz $name: /"
  else
    echo "fuzz $name: FAILED, see $out/$name.log:" >&2
    grep -E -A 30 '^==[0-9]+==|ERROR: libFuzzer|^fuzz_|runtime error' \
      "$out/$name.log" | head -60 >&2
    grep -E 'Test unit written to' "$out/$name.log" >&2
    failed="$failed $name"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed" >&2
  exit 1
fi
echo "fuzz: no crash in $# targets"
