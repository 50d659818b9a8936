#!/usr/bin/env bash
# The training campaign for the bundled SeemoRe-T weights.
#   scripts/campaign.sh start    resume the x2 trunk (campaign/trunk) in the background, nice'd
#   scripts/campaign.sh pause    SIGSTOP it (around benchmarks); resume continues it
#   scripts/campaign.sh resume
#   scripts/campaign.sh stop     SIGTERM: the trunk saves its state at the next iteration and exits;
#                                then the branches (x2 cool-down, x3 / x4 fine-tunes) run when due,
#                                are evaluated, and any scale that beats the shipped weights on Set5
#                                and B100 alike is copied into the package (BRANCHES=0 skips this)
#   scripts/campaign.sh status   iterations, it/s, CPU-hours, latest PSNRs
set -euo pipefail
cd "$(dirname "$0")/.."
TRUNK=campaign/trunk
PIDFILE=$TRUNK/pid
mkdir -p "$TRUNK"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-status}" in
  start)
    if running; then echo "trunk already running (pid $(cat "$PIDFILE"))"; exit 0; fi
    # the repo's venv when the caller has none active (a trunk that cannot start must say so here)
    if ! command -v seemore >/dev/null && [ -x .venv/bin/seemore ]; then PATH="$PWD/.venv/bin:$PATH"; fi
    command -v seemore >/dev/null || { echo "campaign: seemore not found: activate the venv (README quick start)" >&2; exit 2; }
    nohup nice -n 10 seemore train campaign/recipes/cpu-trunk.yaml --run "$TRUNK" --no-progress >>"$TRUNK/train.log" 2>&1 &
    echo $! >"$PIDFILE"
    echo "trunk started (pid $!), log $TRUNK/train.log"
    ;;
  pause)  if running; then kill -STOP "$(cat "$PIDFILE")"; echo paused; fi ;;
  resume) if running; then kill -CONT "$(cat "$PIDFILE")"; echo resumed; fi ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE")
      kill -CONT "$pid"; kill -TERM "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 1; done
      echo "trunk stopped"
    fi
    rm -f "$PIDFILE"
    if [ "${BRANCHES:-1}" = 1 ]; then python scripts/campaign.py branches; fi
    ;;
  status) python scripts/campaign.py status ;;
  *) echo "usage: $0 start|pause|resume|stop|status" >&2; exit 2 ;;
esac
