using FuncProxy.Server;

if (OperatorCli.Handles(args))
{
    return await OperatorCli.RunAsync(args);
}

return await GatewayServer.RunAsync(args);
