using System.ComponentModel;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;

namespace FuncProxy.Tests.Infra;

/// <summary>
/// Keeps infra/main.bicep and the engine's options in step: every FuncProxy__* app setting the template writes must
/// bind to a real <see cref="FuncProxyOptions"/> property, and what the engine needs in Azure must be there and pass
/// its own validation at start. Needs the Bicep CLI (eng/lint-infra.sh restores it); no network, no Azure sign-in.
/// </summary>
public sealed class InfraDriftTests : IClassFixture<BicepDeployment>
{
    private const string Prefix = FuncProxyOptions.SectionName + "__";

    // An HTTP-triggered function must start its response within 230 s on Azure (load balancer idle timeout),
    // whatever functionTimeout says; the gateway's own 504 should come first.
    private static readonly TimeSpan PlatformResponseLimit = TimeSpan.FromSeconds(230);

    private readonly BicepDeployment _deployment;

    public InfraDriftTests(BicepDeployment deployment) => _deployment = deployment;

    [Fact]
    public void Main_template_compiles_without_warnings_or_errors()
    {
        Assert.Equal("", _deployment.CompilerDiagnostics);
        Assert.Contains("subscriptionDeploymentTemplate", _deployment.CompiledTemplate.GetProperty("$schema").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Template_writes_FuncProxy_settings_at_all()
    {
        // Guards the other tests against passing on an empty set.
        Assert.True(FuncProxySettings().Count >= 4, "Expected the function app to carry FuncProxy__* app settings.");
    }

    [Fact]
    public void Every_FuncProxy_app_setting_binds_to_a_FuncProxyOptions_property()
    {
        var unbound = FuncProxySettings().Keys
            .Select(name => (name, error: ResolveOptionPath(name)))
            .Where(x => x.error is not null)
            .Select(x => $"{x.name}: {x.error}")
            .ToList();

        Assert.True(unbound.Count == 0, "App settings that bind to nothing in FuncProxyOptions:\n" + string.Join('\n', unbound));
    }

    [Fact]
    public void Binding_check_refuses_a_setting_the_options_do_not_have()
    {
        // The check above is only worth something if it can fail.
        Assert.NotNull(ResolveOptionPath("FuncProxy__Storage__TableUri"));
        Assert.NotNull(ResolveOptionPath("FuncProxy__Storage"));
        Assert.NotNull(ResolveOptionPath("FuncProxy__Upstreams__openai__BaseUri"));
        Assert.Null(ResolveOptionPath("FuncProxy__Upstreams__anything__AuthScheme"));
        Assert.Null(ResolveOptionPath("FuncProxy__Secrets__openai-api-key"));
        Assert.Null(ResolveOptionPath("FuncProxy__ClientTokens__Audiences__0"));
        Assert.NotNull(ResolveOptionPath("FuncProxy__ClientTokens__Audiences__first"));
        Assert.NotNull(ResolveOptionPath("FuncProxy__ClientTokens__Rules__0__Upn"));
    }

    [Fact]
    public void Settings_the_engine_needs_in_Azure_are_set()
    {
        var settings = FuncProxySettings();

        Assert.True(settings.TryGetValue("FuncProxy__Storage__TableServiceUri", out var table), "FuncProxy:Storage:TableServiceUri is not set.");
        Assert.Contains(".primaryEndpoints.table", table, StringComparison.Ordinal);
        Assert.True(settings.TryGetValue("FuncProxy__KeyVault__VaultUri", out var vault), "FuncProxy:KeyVault:VaultUri is not set.");
        Assert.Contains(".vaultUri", vault, StringComparison.Ordinal);
        Assert.Contains(settings.Keys, name => Regex.IsMatch(name, "^FuncProxy__Upstreams__[^_]+(_[^_]+)*__BaseUrl$"));

        // In Azure: a managed identity, never an account key, and provider secrets only in Key Vault.
        Assert.DoesNotContain("FuncProxy__Storage__ConnectionString", settings.Keys);
        Assert.DoesNotContain(settings.Keys, name => name.StartsWith("FuncProxy__Secrets__", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Deployed_settings_pass_the_engine_validation_at_start()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(FuncProxySettings().Select(s => KeyValuePair.Create(
                s.Key.Replace("__", ":", StringComparison.Ordinal),
                (string?)(BicepDeployment.IsExpression(s.Value) ? PlaceholderFor(s.Key) : s.Value))))
            .Build();
        var options = new FuncProxyOptions();
        configuration.GetSection(FuncProxyOptions.SectionName).Bind(options);

        var result = new FuncProxyOptionsValidator().Validate(null, options);

        Assert.True(result.Succeeded, "The engine would refuse to start with these settings:\n" + result.FailureMessage);
        Assert.NotNull(options.Storage.TableServiceUri);
        Assert.NotNull(options.KeyVault.VaultUri);
        Assert.NotEmpty(options.Upstreams);
        Assert.All(options.Upstreams.Values, upstream => Assert.Equal(Uri.UriSchemeHttps, upstream.BaseUrl!.Scheme));
    }

    [Fact]
    public void Client_tokens_are_on_for_the_deployment_tenant_when_an_audience_is_given()
    {
        var settings = FuncProxySettings();

        Assert.Equal(BicepDeployment.ClientTokenAudience, settings["FuncProxy__ClientTokens__Audiences__0"]);
        Assert.Contains("environment().authentication.loginEndpoint", settings["FuncProxy__ClientTokens__Authority"], StringComparison.Ordinal);
        Assert.Contains("/v2.0", settings["FuncProxy__ClientTokens__Authority"], StringComparison.Ordinal);
        // bicep snapshot runs with --tenant-id 0...0: the setting is the deployment's tenant, not a literal.
        Assert.Equal(Guid.Empty.ToString(), settings["FuncProxy__ClientTokens__TenantId"]);
    }

    [Fact]
    public void Upstreams_present_their_credential_the_way_each_provider_expects()
    {
        var settings = FuncProxySettings();

        // What the engine will actually send, after its defaults: Bearer for Authorization, the bare key elsewhere.
        FuncProxy.UpstreamOptions Upstream(string name) => new()
        {
            AuthHeader = settings.GetValueOrDefault($"FuncProxy__Upstreams__{name}__AuthHeader") ?? "Authorization",
            AuthScheme = settings.GetValueOrDefault($"FuncProxy__Upstreams__{name}__AuthScheme"),
        };

        Assert.Equal("Authorization", Upstream("openai").AuthHeader);
        Assert.Equal("Bearer", Upstream("openai").EffectiveAuthScheme);
        Assert.Equal("x-api-key", Upstream("anthropic").AuthHeader);
        Assert.Equal("", Upstream("anthropic").EffectiveAuthScheme);
    }

    [Fact]
    public void App_setting_names_are_valid_on_App_Service()
    {
        // App Service allows letters, digits, '.' and '_' in setting names and turns '.' into '_' on Linux.
        var invalid = _deployment.AppSettings.Keys.Where(name => !Regex.IsMatch(name, "^[A-Za-z0-9_]+$")).ToList();

        Assert.True(invalid.Count == 0, "App setting names App Service would refuse or rename: " + string.Join(", ", invalid));
    }

    [Fact]
    public void Gateway_times_out_before_the_platform_cuts_the_response()
    {
        var configured = TimeSpan.Parse(FuncProxySettings()["FuncProxy__Proxy__UpstreamTimeout"], System.Globalization.CultureInfo.InvariantCulture);

        Assert.InRange(configured, TimeSpan.FromSeconds(30), PlatformResponseLimit - TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Engine_and_host_use_the_same_managed_identity_and_no_storage_key()
    {
        var settings = _deployment.AppSettings;

        Assert.Equal("managedidentity", settings["AzureWebJobsStorage__credential"]);
        Assert.Equal(settings["AzureWebJobsStorage__clientId"], settings["FuncProxy__Storage__ManagedIdentityClientId"]);
        Assert.Contains(".clientId", settings["FuncProxy__Storage__ManagedIdentityClientId"], StringComparison.Ordinal);
        Assert.DoesNotContain("AzureWebJobsStorage", settings.Keys);
        Assert.Contains("Authorization=AAD", settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"], StringComparison.Ordinal);
        Assert.DoesNotContain(settings.Values, value => value.Contains("listKeys", StringComparison.OrdinalIgnoreCase)
            || value.Contains("AccountKey=", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Function_app_is_Flex_Consumption_on_dotnet_isolated_10_and_tagged_for_azd()
    {
        var app = _deployment.FunctionApp;
        var config = app.GetProperty("properties").GetProperty("functionAppConfig");

        Assert.Equal("dotnet-isolated", config.GetProperty("runtime").GetProperty("name").GetString());
        Assert.Equal("10.0", config.GetProperty("runtime").GetProperty("version").GetString());
        Assert.Equal("UserAssignedIdentity", config.GetProperty("deployment").GetProperty("storage").GetProperty("authentication").GetProperty("type").GetString());
        Assert.True(app.GetProperty("properties").GetProperty("httpsOnly").GetBoolean());
        Assert.Equal("api", app.GetProperty("tags").GetProperty("azd-service-name").GetString());
        var plan = _deployment.Resources.Single(r => r.GetProperty("type").GetString() == "Microsoft.Web/serverfarms");
        Assert.Equal("FC1", plan.GetProperty("sku").GetProperty("name").GetString());
    }

    [Fact]
    public void Role_assignments_are_the_least_privilege_set()
    {
        const string blobDataOwner = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
        const string tableDataContributor = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
        const string secretsUser = "4633458b-17de-408a-b874-0445c86b69e6";
        const string secretsOfficer = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
        const string metricsPublisher = "3913510d-42f4-4e42-8a64-420c390055eb";
        const string openAIUser = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd";

        var assignments = _deployment.Resources
            .Where(r => r.GetProperty("type").GetString() == "Microsoft.Authorization/roleAssignments")
            .Select(r => r.GetProperty("properties"))
            .Select(p => (
                principal: p.GetProperty("principalId").GetString()!,
                role: p.GetProperty("roleDefinitionId").GetString()!.Split('/')[^1]))
            .ToList();

        var deployer = assignments.Where(a => a.principal == BicepDeployment.DeployerPrincipalId).Select(a => a.role).Order().ToList();
        var app = assignments.Where(a => a.principal != BicepDeployment.DeployerPrincipalId).ToList();

        // Cognitive Services OpenAI User comes from the one Azure OpenAI account the drift parameters name.
        Assert.Equal(new[] { blobDataOwner, tableDataContributor, secretsUser, metricsPublisher, openAIUser }.Order(), app.Select(a => a.role).Order());
        Assert.All(app, a => Assert.Contains("userAssignedIdentities", a.principal, StringComparison.Ordinal));
        Assert.Equal(new[] { tableDataContributor, secretsOfficer }.Order(), deployer);
    }

    [Fact]
    public void Each_listed_Azure_OpenAI_account_grants_the_app_identity_OpenAI_User_on_that_account_only()
    {
        const string openAIUser = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd";
        var grants = _deployment.Resources
            .Where(r => r.GetProperty("type").GetString() == "Microsoft.Authorization/roleAssignments"
                && r.GetProperty("properties").GetProperty("roleDefinitionId").GetString()!.EndsWith(openAIUser, StringComparison.Ordinal))
            .ToList();

        var grant = Assert.Single(grants);
        Assert.StartsWith(BicepDeployment.OpenAIAccountId + "/providers/Microsoft.Authorization/roleAssignments/", grant.GetProperty("id").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("userAssignedIdentities", grant.GetProperty("properties").GetProperty("principalId").GetString(), StringComparison.Ordinal);
        Assert.Equal("ServicePrincipal", grant.GetProperty("properties").GetProperty("principalType").GetString());
        Assert.True(_deployment.CompiledTemplate.GetProperty("parameters").TryGetProperty("openAiAccountIds", out var parameter));
        Assert.Equal("", parameter.GetProperty("defaultValue").GetString()); // none unless the operator lists some
    }

    private Dictionary<string, string> FuncProxySettings() =>
        _deployment.AppSettings.Where(s => s.Key.StartsWith(Prefix, StringComparison.Ordinal)).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);

    /// <summary>
    /// Walks an app setting name (<c>FuncProxy__Storage__TableServiceUri</c>) down <see cref="FuncProxyOptions"/> the way
    /// the configuration binder does: property names case-insensitively, any key for a dictionary, and a leaf that a
    /// string converts to. Returns null when it binds, else why not.
    /// </summary>
    private static string? ResolveOptionPath(string settingName)
    {
        var segments = settingName.Split("__");
        if (!string.Equals(segments[0], FuncProxyOptions.SectionName, StringComparison.OrdinalIgnoreCase))
        {
            return $"does not start with {FuncProxyOptions.SectionName}__";
        }

        var type = typeof(FuncProxyOptions);
        foreach (var segment in segments.Skip(1))
        {
            if (string.IsNullOrEmpty(segment))
            {
                return "has an empty segment";
            }
            if (DictionaryValueType(type) is { } valueType)
            {
                type = valueType;
                continue;
            }
            if (ListItemType(type) is { } itemType)
            {
                // A list binds from index segments: Audiences__0.
                if (!int.TryParse(segment, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _))
                {
                    return $"'{segment}' is not an index of {type.Name}";
                }
                type = itemType;
                continue;
            }
            if (IsLeaf(type))
            {
                return $"'{segment}' goes below {type.Name}, which is a value";
            }
            var property = type.GetProperty(segment, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
            if (property is null)
            {
                return $"{type.Name} has no property '{segment}'";
            }
            if (property.SetMethod is not { IsPublic: true } && IsLeaf(property.PropertyType))
            {
                return $"{type.Name}.{property.Name} has no public setter";
            }
            type = property.PropertyType;
        }
        return IsLeaf(type) ? null : $"ends at {type.Name}, an object, not a value";
    }

    private static Type? ListItemType(Type type) =>
        type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>) ? type.GetGenericArguments()[0] : null;

    private static Type? DictionaryValueType(Type type)
    {
        var dictionary = type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IDictionary<,>)
            ? type
            : type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>));
        return dictionary is not null && dictionary.GetGenericArguments()[0] == typeof(string) ? dictionary.GetGenericArguments()[1] : null;
    }

    private static bool IsLeaf(Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        return underlying == typeof(string) || underlying.IsPrimitive || underlying.IsEnum
            || TypeDescriptor.GetConverter(underlying).CanConvertFrom(typeof(string));
    }

    /// <summary>A stand-in for a value ARM fills in at deployment (an endpoint or a client id), typed by its option.</summary>
    private static string PlaceholderFor(string settingName)
    {
        var leaf = settingName.Split("__")[^1];
        return leaf.EndsWith("Uri", StringComparison.OrdinalIgnoreCase) || leaf.EndsWith("Url", StringComparison.OrdinalIgnoreCase)
            ? "https://placeholder.invalid/"
            : leaf == "Authority" ? "https://placeholder.invalid/00000000-0000-0000-0000-000000000000/v2.0"
            : Guid.Empty.ToString();
    }
}
