using System.Diagnostics;
using System.Net;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Proxying;

/// <summary>The one <see cref="HttpMessageInvoker"/> every forwarded call shares, configured as YARP recommends for a proxy.</summary>
public sealed class UpstreamInvoker : IDisposable
{
    public UpstreamInvoker()
    {
        Invoker = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = TimeSpan.FromSeconds(15),
            // Provider DNS changes (failover) are picked up within this time.
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            ActivityHeadersPropagator = new ReverseProxyPropagator(DistributedContextPropagator.Current),
        }, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
