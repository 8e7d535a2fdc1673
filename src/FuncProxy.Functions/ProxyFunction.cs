using FuncProxy.Admin;
using FuncProxy.Hosting;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.Functions.Worker;

namespace FuncProxy.Functions;

/// <summary>
/// <c>/api/{upstream}/{**path}</c>, every method: the client call path, and the gateway's own <c>admin</c> and
/// <c>health</c> segments, which the Functions host cannot give functions of their own (see <see cref="RunAsync"/>).
/// </summary>
public sealed class ProxyFunction
{
    internal const string AdminSegment = "admin";
    internal const string HealthSegment = "health";

    private readonly ProxyHandler _proxy;
    private readonly AdminHandler _admin;
    private readonly HealthHandler _health;

    public ProxyFunction(ProxyHandler proxy, AdminHandler admin, HealthHandler health)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        ArgumentNullException.ThrowIfNull(admin);
        ArgumentNullException.ThrowIfNull(health);
        _proxy = proxy;
        _admin = admin;
        _health = health;
    }

    // Routing on the Functions host, checked in the host's source (Azure/azure-functions-host):
    // - ScriptHost.ValidateHttpFunction refuses any route that starts with "admin" or "runtime", whatever the
    //   routePrefix ("The specified route conflicts with one or more built in routes"; open issue #1781). So
    //   /api/admin/{**path} cannot have a function of its own: it arrives here with upstream == "admin".
    // - Routes are tried in function order (by name), not by ASP.NET Core precedence (#9876), so "Health" may or may
    //   not be matched before this catch-all; both cases end in HealthHandler.
    // The engine reserves both names (FuncProxyOptionsValidator.ReservedUpstreamNames), so no upstream is shadowed.
    [Function("Proxy")]
    public async Task<IActionResult> RunAsync(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", "post", "put", "patch", "delete", "head", "options",
            Route = "{upstream}/{*path}")] HttpRequest req,
        string upstream,
        string? path)
    {
        ArgumentNullException.ThrowIfNull(req);
        var context = req.HttpContext;
        if (string.Equals(upstream, AdminSegment, StringComparison.OrdinalIgnoreCase))
        {
            await AdminAsync(context, path).ConfigureAwait(false);
        }
        else if (string.Equals(upstream, HealthSegment, StringComparison.OrdinalIgnoreCase) && string.IsNullOrEmpty(path)
            && HttpMethods.IsGet(req.Method))
        {
            await _health.HandleAsync(context).ConfigureAwait(false);
        }
        else
        {
            await _proxy.HandleAsync(context, upstream, path).ConfigureAwait(false);
        }
        return new EmptyResult();
    }

    /// <summary>
    /// The admin function: <c>/api/admin/{**path}</c>. Binds to the admin handler,
    /// <c>FuncProxy.Admin.AdminHandler.HandleAsync(HttpContext context, string? path)</c>, which authenticates the
    /// operator itself (admin key or Entra ID token); the function level stays Anonymous.
    /// </summary>
    private Task AdminAsync(HttpContext context, string? path) => _admin.HandleAsync(context, path);
}
