using FuncProxy.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Azure.Functions.Worker;

namespace FuncProxy.Functions;

/// <summary><c>GET /api/health</c>: hands the request to <see cref="HealthHandler"/>.</summary>
public sealed class HealthFunction
{
    private readonly HealthHandler _health;

    public HealthFunction(HealthHandler health)
    {
        ArgumentNullException.ThrowIfNull(health);
        _health = health;
    }

    // Named so that it sorts before "Proxy": the Functions host tries routes in function-name order, not by ASP.NET Core
    // route precedence (Azure/azure-functions-dotnet-worker#1855). ProxyFunction also dispatches "health" itself.
    [Function("Health")]
    public async Task<IActionResult> RunAsync(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "health")] HttpRequest req)
    {
        ArgumentNullException.ThrowIfNull(req);
        await _health.HandleAsync(req.HttpContext).ConfigureAwait(false);
        return new EmptyResult();
    }
}
