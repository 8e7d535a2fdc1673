using Azure.Monitor.OpenTelemetry.Exporter;
using FuncProxy;
using FuncProxy.Telemetry;
using Microsoft.Extensions.Configuration;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// OpenTelemetry for the engine in either host: traces and metrics go to Application Insights when
/// <c>APPLICATIONINSIGHTS_CONNECTION_STRING</c> is set (Entra ID auth with the managed identity, since the component has
/// local auth off), to OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, and nowhere otherwise.
/// </summary>
public static class FuncProxyTelemetryExtensions
{
    public static IServiceCollection AddFuncProxyTelemetry(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var appInsights = configuration["APPLICATIONINSIGHTS_CONNECTION_STRING"];
        var otlp = configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        var clientId = configuration[$"{FuncProxyOptions.SectionName}:Storage:ManagedIdentityClientId"];
        if (string.IsNullOrWhiteSpace(appInsights) && string.IsNullOrWhiteSpace(otlp))
        {
            // Nowhere to send it: no SDK pipeline at all, so requests pay nothing for spans nobody reads. The engine's
            // ActivitySource and Meter still exist for any listener a host adds (the tests add in-memory exporters).
            return services;
        }

        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(configuration["OTEL_SERVICE_NAME"] ?? "funcproxy"))
            .WithTracing(tracing =>
            {
                tracing.AddSource(FuncProxyMetrics.Name).AddAspNetCoreInstrumentation().AddHttpClientInstrumentation();
                if (!string.IsNullOrWhiteSpace(appInsights))
                {
                    tracing.AddAzureMonitorTraceExporter(o =>
                    {
                        o.ConnectionString = appInsights;
                        o.Credential = FuncProxyTables.CreateCredential(clientId);
                    });
                }
                if (!string.IsNullOrWhiteSpace(otlp))
                {
                    tracing.AddOtlpExporter();
                }
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(FuncProxyMetrics.Name).AddAspNetCoreInstrumentation();
                if (!string.IsNullOrWhiteSpace(appInsights))
                {
                    metrics.AddAzureMonitorMetricExporter(o =>
                    {
                        o.ConnectionString = appInsights;
                        o.Credential = FuncProxyTables.CreateCredential(clientId);
                    });
                }
                if (!string.IsNullOrWhiteSpace(otlp))
                {
                    metrics.AddOtlpExporter();
                }
            });
        return services;
    }
}
