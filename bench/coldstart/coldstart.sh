#!/usr/bin/env bash
# Cold start of FuncProxy.Server (issue 11): process start to the first proxied 200, with the CPU time the process used
# until then and its RSS at that moment.
# Usage: bench/coldstart/coldstart.sh SERVER_DIR [runs] [base-port]
#   SERVER_DIR: a folder with FuncProxy.Server.dll (a publish with or without -p:PublishReadyToRun=true).
# Starts its own Azurite (in memory) and the provider stub (bench/FuncProxy.Bench's stub mode, built in Release), mints a
# key with 'keys create', then starts the server 'runs' times (default 5), each time polling one chat completion through
# it every 10 ms until it answers 200. Hold the benchmark lock around it: flock /tmp/funcproxy-bench.lock bash ...
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$(cd "$1" && pwd)"; runs="${2:-5}"; base="${3:-21100}"
azurite_port=$base; stub_port=$((base + 1)); port=$((base + 2))
bench="$root/bench/FuncProxy.Bench/bin/Release/net10.0/FuncProxy.Bench.dll"
[ -f "$bench" ] || { echo "build the bench first: dotnet build bench/FuncProxy.Bench -c Release" >&2; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
node "$root/node_modules/azurite/dist/src/table/main.js" --tableHost 127.0.0.1 --tablePort "$azurite_port" \
  --inMemoryPersistence --skipApiVersionCheck --disableProductStyleUrl --silent >/dev/null 2>&1 & pids+=($!)
dotnet "$bench" stub --port "$stub_port" >/dev/null 2>&1 & pids+=($!)
for p in "$azurite_port" "$stub_port"; do
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
export FuncProxy__Storage__ConnectionString="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:$azurite_port/devstoreaccount1;"
export FuncProxy__Upstreams__stub__BaseUrl="http://127.0.0.1:$stub_port/v1" FuncProxy__Upstreams__stub__SecretName=stubkey
export FuncProxy__Secrets__stubkey=bench-provider-secret Logging__LogLevel__Default=Warning ASPNETCORE_ENVIRONMENT=Production
export ASPNETCORE_URLS="http://127.0.0.1:$port"
key=$(cd "$dir" && dotnet FuncProxy.Server.dll keys create --name coldstart --upstream stub \
  --limit requestsPerMinute=100000000 --limit tokensPerMinute=100000000000 --json | sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
body='{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}'
echo "cold start of $dir/FuncProxy.Server.dll, $runs runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  (cd "$dir" && exec dotnet FuncProxy.Server.dll) >/dev/null 2>&1 & server=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $key" \
      -d "$body" "http://127.0.0.1:$port/api/stub/chat/completions" 2>/dev/null)" = 200 ]; do sleep 0.01; done
  end=$(date +%s%N)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  # CPU time the process used to get there (utime + stime, clock ticks of 10 ms): steadier than wall time on a loaded machine.
  cpu=$(sed 's/.*) //' "/proc/$server/stat" | awk '{print ($12 + $13) * 10}')
  printf 'run %d: first proxied 200 after %d ms (CPU %d ms), RSS %d MiB, load %s\n' "$run" $(((end - start) / 1000000)) "$cpu" $((rss / 1024)) "$(cut -d' ' -f1 /proc/loadavg)"
  kill "$server"; wait "$server" 2>/dev/null || true
done
