using System.Reflection;
using Microsoft.Extensions.Configuration.Json;

namespace FuncProxy.Server;

/// <summary>
/// README's <c>dotnet user-secrets --project src/FuncProxy.Server set "FuncProxy:Secrets:..."</c> must work as written, but
/// ASP.NET Core and the generic host read user-secrets only in the Development environment, and the host and the CLI run
/// as Production unless told otherwise. So both read this project's user-secrets in every environment, at the place
/// Development would put them: after appsettings*.json, before environment variables and the command line (which still
/// win). A deployment has no secrets file, and the file is optional, so nothing changes there.
/// </summary>
internal static class UserSecrets
{
    public static void Add(IConfigurationBuilder configuration, IHostEnvironment environment)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(environment);
        var assembly = typeof(UserSecrets).Assembly;
        if (assembly.GetCustomAttribute<Microsoft.Extensions.Configuration.UserSecrets.UserSecretsIdAttribute>() is null)
        {
            return;
        }
        var sources = configuration.Sources;
        if (environment.IsDevelopment() && Assembly.GetEntryAssembly() == assembly)
        {
            // The host has added them already.
            return;
        }
        var position = sources.Count;
        for (var i = sources.Count - 1; i >= 0; i--)
        {
            if (sources[i] is JsonConfigurationSource { Path: { } path } && path.StartsWith("appsettings", StringComparison.OrdinalIgnoreCase))
            {
                position = i + 1;
                break;
            }
        }
        for (var i = 0; i < sources.Count && position == sources.Count; i++)
        {
            if (sources[i] is Microsoft.Extensions.Configuration.EnvironmentVariables.EnvironmentVariablesConfigurationSource { Prefix: null or "" })
            {
                position = i;
            }
        }
        configuration.AddUserSecrets(assembly, optional: true, reloadOnChange: false);
        var added = sources[^1];
        if (position < sources.Count - 1)
        {
            sources.RemoveAt(sources.Count - 1);
            sources.Insert(position, added);
        }
    }
}
