using FuncProxy.Bench;

// Each mode is one self-contained benchmark that prints ratios against a baseline measured in the same run.
var mode = args.Length > 0 ? args[0] : "help";
var rest = args.Length > 0 ? args[1..] : [];
return mode switch
{
    "gateway" => await GatewayBench.RunAsync(rest),
    "stub" => await StubMode.RunAsync(rest),
    "limiter" => await LimiterBench.RunAsync(rest),
    "peers" => await PeersBench.RunAsync(rest),
    "accuracy-processes" => await ProcessAccuracyBench.RunAsync(rest),
    "pools" => await PoolBench.RunAsync(rest),
    "spend" => await SpendBench.RunAsync(rest),
    "percall" => await PerCallBench.RunAsync(rest),
    "bare-yarp" => await BareYarpMode.RunAsync(rest),
    "lockouts" => await LockoutBench.RunAsync(rest),
    _ => Usage(),
};

static int Usage()
{
    Console.WriteLine("""
        dotnet run -c Release --project bench/FuncProxy.Bench -- <mode> [options]
          gateway [--concurrency 32] [--seconds 5] [--rounds 3]
              the provider stub directly vs a bare YARP forwarder vs FuncProxy.Server (auth + secret + forward)
          stub [--port 8089]
              runs the provider stub (OpenAI chat completions, Responses, embeddings, models; Anthropic messages;
              JSON and SSE) until Ctrl+C or SIGTERM, for trying the gateway without a provider account (the same
              stub starts faster from its own project: dotnet run --project bench/FuncProxy.Stub)
          limiter [--plot docs/benchmarks/limiter-accuracy.png]
              the distributed limiter on a hot key vs a naive read+ETag-write counter, and accuracy across 3 instances
          peers [--concurrency 32] [--seconds 5] [--rounds 3] [--nginx-workers auto] [--portkey-dir DIR]
              FuncProxy.Server with limits on vs nginx limit_req and the Portkey gateway (installed into DIR with npm
              if missing), all in front of the provider stub; the nginx package must be installed
          accuracy-processes [--limit 200] [--seconds 6] [--server-dll PATH] [--local-clock] [--runs 1] [--loads 0.5,1,2,10]
              accuracy of one key's requests-per-second limit across 3 separate FuncProxy.Server processes on one
              Azurite, over HTTP, at 0.5x, 1x, 2x and 10x the limit
          pools [--concurrency 32] [--seconds 5] [--rounds 3] [--share-seconds 30]
              backend pools: failover cost, throughput of 3 backends vs 1, breaker-table operations per call, and how
              many calls two other instances still send to a backend after one instance got 429 with Retry-After 30 s
          spend [--concurrency 16] [--seconds 5] [--rounds 3] [--budget-calls 100] [--accuracy-seconds 6] [--loads 0.5,1,2,10]
              spend control: server CPU per call of a key with a budget, models and an alias vs the same limits without
              them (one FuncProxy.Server process); a daily budget's accuracy in dollars across 3 processes at 0.5x-10x
          percall [--concurrency 32] [--seconds 5] [--rounds 3] [--warmup 5] [--wrk-threads 2] [--nginx-workers 1]
                  [--server-dll PATH] [--serve-seconds 0]
              CPU µs and allocated bytes per call of bare YARP, FuncProxy.Server (limited key) and nginx, each in its own
              process in front of the stub (own process), driven by wrk; needs wrk (apt-get install -y wrk), nginx optional
          bare-yarp --port PORT --upstream http://127.0.0.1:PORT
              Kestrel + YARP IHttpForwarder alone (percall's baseline), until Ctrl+C or SIGTERM
          lockouts [--seconds 10] [--concurrency 24] [--rounds 6]
              per-IP lockouts shared by 3 FuncProxy.Server processes (storage counted through a tap): requests/s, CPU
              and storage operations per call that fails nothing, shared vs unshared; time until the other two
              processes refuse an address locked out on one
        """);
    return 2;
}
