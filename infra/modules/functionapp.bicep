// The Flex Consumption plan and the function app (.NET 10 isolated worker) that hosts FuncProxy.
// Every setting the app reads comes from here; tests/FuncProxy.Tests/Infra/InfraDriftTests.cs compiles this
// template and checks that each FuncProxy__* setting binds to a real FuncProxyOptions property.

@description('Flex Consumption plan name.')
param planName string

@description('Function app name (also its default host name).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource; the app also gets azd-service-name.')
param tags { *: string }

@description('azd service name from azure.yaml; azd finds the app to deploy to by this tag.')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (DefaultAzureCredential and the Functions host pick it by this id).')
param identityClientId string

@description('Storage account for AzureWebJobsStorage and the deployment package.')
param storageAccountName string

@description('Primary blob endpoint of that account, with the trailing slash.')
param blobEndpoint string

@description('Primary table endpoint of that account: the FuncProxy tables live there.')
param tableEndpoint string

@description('Blob container that receives the deployment package.')
param deploymentContainerName string

@description('Key Vault URI that holds the upstream credentials.')
param keyVaultUri string

@description('Application Insights connection string (not a secret on its own: local auth is disabled, ingestion needs Entra ID).')
param applicationInsightsConnectionString string

@description('Upstream settings, already flattened to FuncProxy__Upstreams__{name}__{Property} app settings.')
param upstreamSettings { *: string }

@description('Clients with Entra ID tokens: FuncProxy__ClientTokens__* app settings, or none (docs/entra-id-clients.md).')
param clientTokenSettings { *: string } = {}

@description('How long an upstream may stay silent before the gateway answers 504 (FuncProxy:Proxy:UpstreamTimeout).')
param upstreamTimeout string

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances: also an upper bound on the bill.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Concurrent HTTP requests per instance. A gateway mostly waits on upstreams, so it can hold more than the platform default.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 64

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var hostSettings = {
  // Identity-based host storage: account name plus the user-assigned identity, no connection string.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Entra ID ingestion into Application Insights with the same identity.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var funcProxySettings = {
  FuncProxy__Storage__TableServiceUri: tableEndpoint
  FuncProxy__Storage__ManagedIdentityClientId: identityClientId
  FuncProxy__KeyVault__VaultUri: keyVaultUri
  FuncProxy__Proxy__UpstreamTimeout: upstreamTimeout
}

var appSettings = union(hostSettings, funcProxySettings, upstreamSettings, clientTokenSettings)

resource app 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'dotnet-isolated'
        version: '10.0'
      }
    }
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
