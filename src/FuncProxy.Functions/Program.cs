// The Azure Functions isolated worker host: the same engine as the Kestrel host, behind HTTP-triggered functions.
// FunctionsApplication.CreateBuilder + ConfigureFunctionsWebApplication is the IHostApplicationBuilder shape of the
// worker 2.x packages with the ASP.NET Core integration (HttpRequest in, IActionResult out, streaming both ways).
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
builder.Services.AddFuncProxy(builder.Configuration);

// The worker forwards its logs to the host, which files them under Function.<name>.User, so host.json cannot filter
// these by their own names. Per-call SDK and proxy logs (URLs, timings) would double every request in Application
// Insights: keep their warnings, as the Kestrel host's appsettings.json does.
builder.Logging.AddFilter("Azure", LogLevel.Warning);
builder.Logging.AddFilter("Yarp", LogLevel.Warning);
builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);

await builder.Build().RunAsync().ConfigureAwait(false);
