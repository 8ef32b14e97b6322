#!/bin/sh
# Writes its pid to $JOB_PARAMETER_PIDFILE, then sleeps until it is stopped. On SIGINT or
# SIGTERM (the polite stop of a canceled or handed-back task) it appends the signal's name
# to $JOB_PARAMETER_PIDFILE.signals and exits.
set -eu
trap 'echo INT >>"$JOB_PARAMETER_PIDFILE.signals"; exit 130' INT
trap 'echo TERM >>"$JOB_PARAMETER_PIDFILE.signals"; exit 143' TERM
echo "progress 0.1" >&"$JOBTASK_REPORT_FD"
echo "sleeping as $$"
echo $$ >"$JOB_PARAMETER_PIDFILE.tmp"
mv "$JOB_PARAMETER_PIDFILE.tmp" "$JOB_PARAMETER_PIDFILE"
while :; do
    sleep 0.1
done
