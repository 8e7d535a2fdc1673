// The Azure Functions isolated worker host: the same engine as the Kestrel host, behind HTTP-triggered functions.
// FunctionsApplication.CreateBuilder + ConfigureFunctionsWebApplication is the IHostApplicationBuilder shape of the
// worker 2.x packages with the ASP.NET Core integration (HttpRequest in, IActionResult out, streaming both ways).
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
builder.Services.AddFuncProxy(builder.Configuration);

await builder.Build().RunAsync().ConfigureAwait(false);
