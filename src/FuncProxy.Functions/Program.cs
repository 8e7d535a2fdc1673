// The Azure Functions isolated worker host: the same engine as the Kestrel host, behind HTTP-triggered functions.
// FunctionsApplication.CreateBuilder + ConfigureFunctionsWebApplication is the IHostApplicationBuilder shape of the
// worker 2.x packages with the ASP.NET Core integration (HttpRequest in, IActionResult out).
//
// What the Functions host does to a request before this worker sees it (Azure/azure-functions-host and
// Azure/azure-webjobs-sdk-extensions sources; details and citations in docs/deploy.md, "Behind the Functions host"):
// - Request bodies are not streamed through: the host's HTTP trigger binding (HttpTriggerAttributeBindingProvider,
//   HttpTriggerBinding.BindAsync) reads a body with a Content-Length (or a chunked one when chunked transfer is
//   enabled) whole with ReadAsStringAsync before the invocation starts, and only then forwards it to the worker.
//   Responses do stream: the host's YARP forwarder (DefaultHttpProxyService) copies the worker's response as it comes.
// - The host's forwarder uses YARP's default transforms, which *replace* X-Forwarded-For/-Proto/-Host with what the host
//   saw, and the worker's ASP.NET Core integration runs UseForwardedHeaders (all headers, no forward limit, loopback
//   trusted), so Connection.RemoteIpAddress here is the platform front end's address for every caller. Hence
//   BehindFrontEnd below: unless FuncProxy:ClientIpHeader names the header the front end writes, nobody is locked out
//   (rather than everybody).
using FuncProxy;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
builder.Services.AddFuncProxy(builder.Configuration);
if (builder.Configuration[FuncProxyOptions.SectionName + ":" + nameof(FuncProxyOptions.BehindFrontEnd)] is null)
{
    builder.Services.PostConfigure<FuncProxyOptions>(options => options.BehindFrontEnd = true);
}

// The worker forwards its logs to the host, which files them under Function.<name>.User, so host.json cannot filter
// these by their own names. Per-call SDK and proxy logs (URLs, timings) would double every request in Application
// Insights: keep their warnings, as the Kestrel host's appsettings.json does.
builder.Logging.AddFilter("Azure", LogLevel.Warning);
builder.Logging.AddFilter("Yarp", LogLevel.Warning);
builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);

await builder.Build().RunAsync().ConfigureAwait(false);
