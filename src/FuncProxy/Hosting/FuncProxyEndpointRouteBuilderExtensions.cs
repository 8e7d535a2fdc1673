using FuncProxy;
using FuncProxy.Admin;
using FuncProxy.Hosting;
using FuncProxy.Proxying;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>
/// Maps the gateway's routes for a plain ASP.NET Core host, under <c>/api</c> as the Functions host serves them.
/// Each endpoint only hands the <see cref="HttpContext"/> to the engine.
/// </summary>
public static class FuncProxyEndpointRouteBuilderExtensions
{
    public const string RoutePrefix = "/api";

    public static IEndpointRouteBuilder MapFuncProxy(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var api = endpoints.MapGroup(RoutePrefix);
        // Plain request delegates over the singleton handlers: a delegate with injected parameters would open a DI scope
        // and bind its arguments per request (about 1 KB and a few microseconds a call) for services that never change.
        var services = endpoints.ServiceProvider;
        HealthHandler? health = null;
        AdminHandler? admin = null;
        ProxyHandler? proxy = null;
        api.MapGet("/health", context => (health ??= services.GetRequiredService<HealthHandler>()).HandleAsync(context));
        // The literal "admin" segment outranks the {upstream} parameter in routing precedence, so the management API
        // wins over the proxy route ("admin" is also a reserved upstream name); a test pins this.
        api.Map("/admin/{**path}", context =>
            (admin ??= services.GetRequiredService<AdminHandler>()).HandleAsync(context, RouteValue(context, "path")));
        api.Map("/{upstream}/{**path}", context =>
            (proxy ??= services.GetRequiredService<ProxyHandler>()).HandleAsync(context, RouteValue(context, "upstream")!, RouteValue(context, "path")));
        // Anything else (no upstream segment, a path outside /api) is a problem+json 404 too, not an empty one.
        endpoints.MapFallback(context => Problem.WriteAsync(context, StatusCodes.Status404NotFound, "not_found", "Not Found",
            "No such route: calls go to /api/{upstream}/..., the management API to /api/admin/..., health to /api/health."));
        return endpoints;
    }

    private static string? RouteValue(HttpContext context, string name) => context.Request.RouteValues[name] as string;
}
