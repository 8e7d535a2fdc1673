// The provider stub for trying FuncProxy offline: dotnet run --project bench/FuncProxy.Stub -- [--port 8089]
return await FuncProxy.Bench.StubMode.RunAsync(args);
