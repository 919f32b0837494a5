#!/usr/bin/env bash
# Mutation testing of the domain crate: cargo-mutants changes the rules one
# small way at a time (a condition inverted, a function returning a constant)
# and runs the domain's tests; a mutant the tests do not catch is a rule no
# test pins down. Prints the counts and the score (caught of viable), and
# fails when the score is below CAB_MUTANTS_MIN (default 95) or a mutant
# survives in the duty, quorum, lifecycle, materiality or audit-chain code.
# Extra arguments go to cargo mutants (e.g. --re 'approval' for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
  cargo install cargo-mutants --version "$version" --locked
fi
out=target/mutants
rm -rf "$out"
mkdir -p "$(dirname "$out")"
status=0
cargo mutants -p cab-domain --no-shuffle --output "$out" "$@" || status=$?
# cargo-mutants exits 2 when mutants survive, 3 on timeouts: judged below.
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
  echo "cargo mutants failed (exit $status)" >&2
  exit "$status"
fi
dir="$out/mutants.out"
caught=$(wc -l < "$dir/caught.txt")
missed=$(wc -l < "$dir/missed.txt")
timeout=$(wc -l < "$dir/timeout.txt")
unviable=$(wc -l < "$dir/unviable.txt")
viable=$((caught + missed + timeout))
score=$(( viable == 0 ? 100 : (100 * (caught + timeout)) / viable ))
echo "mutants: $caught caught, $missed missed, $timeout timed out, $unviable unviable; score $score %"
min=${CAB_MUTANTS_MIN:-95}
critical='approval\.rs.*(check_duty|check_independence|tally|evaluate|standing|rule|is_material|check_new_contributor)|change\.rs.*(check_action|check_authorship|ChangeKey)|lifecycle\.rs|tally\.rs|audit\.rs.*(ChainVerifier|canonical_bytes|chain_hash|format_time|verify_chain|seal)'
if grep -E "$critical" "$dir/missed.txt"; then
  echo "mutants survive in the duty, quorum, lifecycle, materiality or audit-chain code (above)" >&2
  exit 1
fi
if [ "$score" -lt "$min" ]; then
  echo "mutation score $score % is below $min %; missed mutants:" >&2
  cat "$dir/missed.txt" >&2
  exit 1
fi
