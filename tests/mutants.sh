#!/usr/bin/env bash
# Mutation testing of the domain crate: cargo-mutants changes the rules one
# small way at a time (a condition inverted, a function returning a constant)
# and runs the domain's tests; a mutant the tests do not catch is a rule no
# test pins down. Prints the counts and the score (caught of viable), and
# fails when the score is below CAB_MUTANTS_MIN (default 95) or a mutant
# survives in the duty, quorum, lifecycle, materiality, audit-chain,
# checkpoint or export-check code.
#
# Every mutant of the files that hold those rules, the deployment gate and
# the checkpoint and export checks is tested on every run. Of the other
# files' mutants, one half is tested: the half the commit's id picks (its
# last hex digit, even or odd), so commits test either half alike and a run
# can be repeated exactly.
# `bash tests/mutants.sh --all` tests every mutant (about twice as long).
# Other arguments go to cargo mutants (e.g. --re 'approval' for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
  cargo install cargo-mutants --version "$version" --locked
fi
all=0
if [ "${1:-}" = --all ]; then
  all=1
  shift
fi
core=(approval change lifecycle tally audit checkpoint export_check deployment)
files=()
for f in "${core[@]}"; do files+=(-f "crates/cab-domain/src/$f.rs"); done
# The text serde shows when a visitor meets a value of the wrong type is no
# rule; the tests do not read it.
common=(-p cab-domain --no-shuffle --profile mutants --minimum-test-timeout 5
  --exclude-re 'Visitor.*::expecting' "$@")
out=target/mutants
rm -rf "$out"
mkdir -p "$out"

run() { # output directory, then arguments
  local dir=$1 status=0
  shift
  cargo mutants "${common[@]}" --output "$dir" "$@" || status=$?
  # cargo-mutants exits 2 when mutants survive, 3 on timeouts: judged below.
  if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
    echo "cargo mutants failed (exit $status)" >&2
    exit "$status"
  fi
}

if [ "$all" = 1 ]; then
  echo "== every mutant of the domain crate"
  run "$out/all"
else
  echo "== every mutant of the rules' files: ${core[*]}"
  run "$out/core" "${files[@]}"
  if ! commit=$(git rev-parse HEAD); then
    echo "no commit to pick a half of the mutants by; run with --all" >&2
    exit 1
  fi
  half=$((16#${commit: -1} % 2))
  echo "== half $((half + 1)) of 2 of the other files' mutants (commit ${commit:0:12})"
  excluded=()
  for f in "${core[@]}"; do excluded+=(-e "crates/cab-domain/src/$f.rs"); done
  run "$out/rest" "${excluded[@]}" --shard "$half/2" --sharding round-robin
fi

count() { { cat "$out"/*/mutants.out/"$1.txt" 2>/dev/null || true; } | wc -l; }
caught=$(count caught)
missed=$(count missed)
timeout=$(count timeout)
unviable=$(count unviable)
viable=$((caught + missed + timeout))
score=$((viable == 0 ? 100 : (100 * (caught + timeout)) / viable))
echo "mutants: $caught caught, $missed missed, $timeout timed out, $unviable unviable; score $score %"
min=${CAB_MUTANTS_MIN:-95}
critical='approval\.rs.*(check_duty|check_independence|tally|evaluate|standing|rule|is_material|check_new_contributor)|change\.rs.*(check_action|check_authorship|ChangeKey)|lifecycle\.rs|tally\.rs|audit\.rs.*(ChainVerifier|canonical_bytes|chain_hash|format_time|verify_chain|seal)|checkpoint\.rs|export_check\.rs'
if { cat "$out"/*/mutants.out/missed.txt 2>/dev/null || true; } | grep -E "$critical"; then
  echo "mutants survive in the duty, quorum, lifecycle, materiality or audit-chain code (above)" >&2
  exit 1
fi
if [ "$score" -lt "$min" ]; then
  echo "mutation score $score % is below $min %; missed mutants:" >&2
  cat "$out"/*/mutants.out/missed.txt >&2
  exit 1
fi
