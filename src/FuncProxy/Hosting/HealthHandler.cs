using Microsoft.AspNetCore.Http;

namespace FuncProxy.Hosting;

/// <summary><c>GET /api/health</c>: the process is up and configured. Cheap, no storage call, nothing secret.</summary>
public sealed class HealthHandler
{
    private static readonly byte[] Body = """{"status":"ok"}"""u8.ToArray();

    public Task HandleAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers.XContentTypeOptions = "nosniff";
        context.Response.ContentLength = Body.Length;
        return context.Response.Body.WriteAsync(Body, context.RequestAborted).AsTask();
    }
}
