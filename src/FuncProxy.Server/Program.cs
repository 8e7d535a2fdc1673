using FuncProxy.Server;

if (OperatorCli.Handles(args))
{
    return await OperatorCli.RunAsync(args);
}

var app = await GatewayServer.BuildAsync(args);
await app.RunAsync();
return 0;
