using FuncProxy.Http;

namespace Microsoft.AspNetCore.Builder;

/// <summary>The gateway's middleware for a plain ASP.NET Core host.</summary>
public static class FuncProxyApplicationBuilderExtensions
{
    /// <summary>
    /// The gateway's own limits on a request's target and header block (414/431 problem+json) and
    /// <c>X-Content-Type-Options: nosniff</c> on every response; add it first, before <see cref="FuncProxyEndpointRouteBuilderExtensions.MapFuncProxy"/>.
    /// </summary>
    public static IApplicationBuilder UseFuncProxyRequestLimits(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.UseMiddleware<RequestLimits>();
    }
}
