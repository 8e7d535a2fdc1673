// Lets the app's identity call one Azure OpenAI account with Entra ID tokens (FuncProxy backends with
// Auth = ManagedIdentity): Cognitive Services OpenAI User on that account only. Deployed into the account's own
// resource group, which may be in another subscription than the app.

@description('Name of the Azure OpenAI (Cognitive Services) account.')
param accountName string

@description('Name of the user-assigned identity the app runs as.')
param appIdentityName string

@description('Resource group of that identity (the app\'s own).')
param appIdentityResourceGroup string

@description('Subscription of that identity.')
param appIdentitySubscriptionId string

// Built-in role definition id (identical in every tenant): Cognitive Services OpenAI User.
var cognitiveServicesOpenAIUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: appIdentityName
  scope: resourceGroup(appIdentitySubscriptionId, appIdentityResourceGroup)
}

resource appOpenAIUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appIdentity.id, cognitiveServicesOpenAIUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIUser)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}
