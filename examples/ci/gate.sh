#!/usr/bin/env bash
# CI gate on a Lighteval run: block the release when a task regresses significantly.
#
#   examples/ci/gate.sh RESULTS.json [BASELINE]
#
# BASELINE is a stored baseline (NAME or NAME@VERSION, see `govloop baseline set`)
# or a results file of the released model. Exit code: 0 pass (or warn), 1 fail,
# 2 inconclusive or error; JUnit XML for the CI's test report lands in gate-junit.xml.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
results="${1:?usage: gate.sh RESULTS.json [BASELINE]}"
baseline="${2:-}"
policy="${GATE_POLICY:-$here/../policies/lighteval-release.yaml}"
govloop="${GOVLOOP:-govloop}"

args=(gate check --policy "$policy" --results "$results" --junit gate-junit.xml)
if [[ -f "$baseline" ]]; then
  args+=(--baseline-file "$baseline")
elif [[ -n "$baseline" ]]; then
  args+=(--baseline "$baseline")
fi

"$govloop" "${args[@]}"
code=$?
case $code in
  0) echo "gate passed: release may proceed" ;;
  1) echo "gate FAILED: a metric regressed or broke a threshold; see the table above" >&2 ;;
  2) echo "gate INCONCLUSIVE or errored: not enough evidence to release; see above" >&2 ;;
  *) echo "govloop exited with $code" >&2 ;;
esac
exit $code
