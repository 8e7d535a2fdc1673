using FuncProxy.Backends;
using FuncProxy.Proxying;

namespace FuncProxy.Tests.Backends;

/// <summary>A backend's built target URLs: reused for a repeated path, never mixed up between paths, queries or backends.</summary>
public sealed class BackendTargetTests
{
    private static Backend NewBackend(string baseUrl) =>
        new("openai", "default", new BackendOptions { BaseUrl = new Uri(baseUrl) }, TimeSpan.FromSeconds(100), null, new BreakerOptions());

    private static Uri Target(Backend backend, string path, string query = "")
    {
        Assert.True(UpstreamPath.TryParse(path, query, out var parsed));
        Assert.True(backend.TryBuildTarget(parsed, out var target));
        return target;
    }

    [Fact]
    public void A_repeated_path_reuses_its_target_and_other_paths_and_queries_get_their_own()
    {
        var backend = NewBackend("https://provider.example/v1");
        var first = Target(backend, "chat/completions");
        Assert.Same(first, Target(backend, "chat/completions"));
        Assert.Equal("https://provider.example/v1/chat/completions", first.AbsoluteUri);
        Assert.Equal("https://provider.example/v1/chat/completions?api-version=1", Target(backend, "chat/completions", "?api-version=1").AbsoluteUri);
        Assert.Equal("https://provider.example/v1/embeddings", Target(backend, "embeddings").AbsoluteUri);
        Assert.Equal("https://other.example/base/chat/completions", Target(NewBackend("https://other.example/base"), "chat/completions").AbsoluteUri);
    }

    [Fact]
    public void Paths_beyond_the_cache_bound_are_still_built_each_for_itself()
    {
        var backend = NewBackend("https://provider.example/v1");
        for (var i = 0; i < 600; i++)
        {
            Assert.Equal($"https://provider.example/v1/files/f{i}", Target(backend, $"files/f{i}").AbsoluteUri);
        }
        Assert.Equal("https://provider.example/v1/files/f599", Target(backend, "files/f599").AbsoluteUri);
    }
}
