// FuncProxy on Azure: everything `azd up` provisions. Subscription scope so the resource group is part of the
// template; every resource is in local modules (no registry modules).
targetScope = 'subscription'

@description('azd environment name; names the resource group and seeds the unique suffix of every resource.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Region for every resource. It must offer the Flex Consumption plan: `az functionapp list-flexconsumption-locations`.')
@minLength(1)
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person or pipeline running azd (azd fills it in). They get Key Vault Secrets Officer and Storage Table Data Contributor; empty skips that.')
param principalId string = ''

@description('Kind of that principal (azd fills it in): User, ServicePrincipal or Group. Empty means User.')
param principalType string = 'User'

@description('One upstream API behind the gateway.')
type upstream = {
  @description('Absolute https base URL; client paths are appended below it (FuncProxy:Upstreams:{name}:BaseUrl).')
  baseUrl: string

  @description('Key Vault secret that holds the provider credential; omit for an upstream that needs none.')
  secretName: string?

  @description('Header that carries the credential; omitted means Authorization.')
  authHeader: string?

  @description('Scheme before the credential; omitted means Bearer for the Authorization header and the bare value for any other header; none means the bare value.')
  authScheme: string?
}

@description('Upstreams by the name used in /api/{name}/... Names become app setting names, so use letters, digits and underscores only.')
param upstreams { *: upstream } = {
  openai: {
    baseUrl: 'https://api.openai.com/v1'
    secretName: 'openai-api-key'
    authHeader: 'Authorization'
  }
  anthropic: {
    baseUrl: 'https://api.anthropic.com'
    secretName: 'anthropic-api-key'
    // The bare key: the engine's default for any header other than Authorization.
    authHeader: 'x-api-key'
  }
}

@description('Resource ids of Azure OpenAI accounts the app calls with its managed identity (backends with Auth ManagedIdentity), comma-separated, e.g. /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>. Each gets the Cognitive Services OpenAI User role for the app identity. Empty: none.')
param openAiAccountIds string = ''

@description('Clients with Entra ID tokens instead of FuncProxy keys (docs/entra-id-clients.md): the gateway API app registration\'s client id (v2 tokens) or Application ID URI such as api://funcproxy (v1 tokens). Turns FuncProxy:ClientTokens on for the deployment\'s tenant; map tokens to keys with the management API or CLI (token-rules). Empty: off.')
param clientTokenAudience string = ''

@description('How long an upstream may stay silent before the gateway answers 504. Kept under the 230 s an HTTP-triggered function has to start its response on Azure.')
param upstreamTimeout string = '00:03:30'

@description('Flex Consumption instance memory, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Concurrent HTTP requests per instance.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 64

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// Names are fixed before deployment (not read back from module outputs), so role assignment ids and What-If stay exact.
var names = {
  resourceGroup: 'rg-${environmentName}'
  logAnalytics: 'log-${resourceToken}'
  applicationInsights: 'appi-${resourceToken}'
  identity: 'id-api-${resourceToken}'
  storage: 'st${resourceToken}'
  keyVault: 'kv-${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-api-${resourceToken}'
}

// One tenant: the deployment's. Its v2.0 authority; the engine also accepts the tenant's v1 issuer.
var clientTokenSettings = empty(clientTokenAudience) ? {} : {
  FuncProxy__ClientTokens__Authority: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
  FuncProxy__ClientTokens__TenantId: tenant().tenantId
  FuncProxy__ClientTokens__Audiences__0: clientTokenAudience
}

var upstreamSettingList = flatten(map(items(upstreams), u => concat(
  [
    {
      key: 'FuncProxy__Upstreams__${u.key}__BaseUrl'
      value: u.value.baseUrl
    }
  ],
  u.value.?secretName == null ? [] : [
    {
      key: 'FuncProxy__Upstreams__${u.key}__SecretName'
      value: u.value.secretName!
    }
  ],
  u.value.?authHeader == null ? [] : [
    {
      key: 'FuncProxy__Upstreams__${u.key}__AuthHeader'
      value: u.value.authHeader!
    }
  ],
  u.value.?authScheme == null ? [] : [
    {
      key: 'FuncProxy__Upstreams__${u.key}__AuthScheme'
      value: u.value.authScheme!
    }
  ]
)))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: 'app-package'
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    appIdentityName: names.identity
    deployerPrincipalId: principalId
    deployerPrincipalType: empty(principalType) ? 'User' : principalType
    storageAccountName: names.storage
    keyVaultName: names.keyVault
    applicationInsightsName: names.applicationInsights
  }
  // The names above are plain strings, so the dependency on the resources they name is spelled out.
  dependsOn: [
    identity
    storage
    keyVault
    monitoring
  ]
}

var openAiAccounts = filter(map(split(openAiAccountIds, ','), id => trim(id)), id => !empty(id))

// One role assignment per Azure OpenAI account, in that account's resource group.
module openAiAccess 'modules/openai-access.bicep' = [
  for (accountId, i) in openAiAccounts: {
    name: 'openai-access-${i}'
    scope: resourceGroup(split(accountId, '/')[2], split(accountId, '/')[4])
    params: {
      accountName: last(split(accountId, '/'))
      appIdentityName: names.identity
      appIdentityResourceGroup: names.resourceGroup
      appIdentitySubscriptionId: subscription().subscriptionId
    }
    // The identity's name is a plain string, so the dependency on it is spelled out.
    dependsOn: [
      identity
    ]
  }
]

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    planName: names.plan
    name: names.functionApp
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    keyVaultUri: keyVault.outputs.uri
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    upstreamSettings: toObject(upstreamSettingList, s => s.key, s => s.value)
    clientTokenSettings: clientTokenSettings
    upstreamTimeout: upstreamTimeout
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsWorkspaceName
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsWorkspaceCustomerId
@description('Space-separated upstream=secretName pairs, read by the postprovision hook to print the `az keyvault secret set` commands.')
output FUNCPROXY_UPSTREAM_SECRETS string = join(map(filter(items(upstreams), u => u.value.?secretName != null), u => '${u.key}=${u.value.secretName!}'), ' ')
