#!/bin/sh
# A task in $JOB_PARAMETER_STEPS steps (default 4), $JOB_PARAMETER_DELAY seconds each
# (default 0.3), after a silent pause of $JOB_PARAMETER_PAUSE seconds (default 0: during it
# only the worker's heartbeats keep the lease). Reports progress after each step through
# the report descriptor, then its output ("done <name>") and success.
set -eu
steps=${JOB_PARAMETER_STEPS:-4}
delay=${JOB_PARAMETER_DELAY:-0.3}
sleep "${JOB_PARAMETER_PAUSE:-0}"
i=1
while [ "$i" -le "$steps" ]; do
    echo "step $i of $steps"
    sleep "$delay"
    if [ "$i" -eq "$steps" ]; then
        echo "progress 1" >&"$JOBTASK_REPORT_FD"
    else
        printf 'progress 0.%02d\n' $((i * 100 / steps)) >&"$JOBTASK_REPORT_FD"
    fi
    i=$((i + 1))
done
echo "output done ${JOB_PARAMETER_NAME:-}" >&"$JOBTASK_REPORT_FD"
echo "success true" >&"$JOBTASK_REPORT_FD"
