using FuncProxy.Server;
using Microsoft.Extensions.Configuration;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>The operator CLI run in this process on the test's own settings only (no files, no environment), its output captured.</summary>
public static class CliRun
{
    public static async Task<(int Code, string Out, string Err)> RunAsync(IDictionary<string, string?> settings, params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await OperatorCli.RunAsync(args, output, error, config =>
        {
            config.Sources.Clear();
            config.AddInMemoryCollection(settings);
        });
        return (code, output.ToString(), error.ToString());
    }
}
