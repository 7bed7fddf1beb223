// Everything the function app uses, and the one identity allowed to use it.
//
// Storage: ONE account for the Functions host (AzureWebJobsStorage), the Flex deployment package, the SCIM
// table AND the change-feed queue. Why not a separate data account:
//   - the only principal is the app's user-assigned identity, which needs all of them anyway; a second
//     account would add a resource to harden and pay for, not a privilege boundary;
//   - the identity's roles on the SCIM data are scoped to the data itself, not the account: Table Data
//     Contributor on the `scim` table, Queue Data Message Sender on the `scim-changes` queue; no principal
//     gets Table or Queue access at account scope, so the host's blobs, the data and the change feed stay
//     apart in RBAC terms;
//   - the queue role is the least one that works: the app only sends (the queue is created here), so it
//     gets neither Contributor (read, delete, create queues) nor any right on another queue of the
//     account; reading and deleting the feed's messages is for consumers, with their own role on it;
//   - blob rights are per container, never on the account: the app's identity is Blob Data Owner of the
//     host's two containers only (azure-webjobs-hosts: leases and the timer trigger's lock;
//     azure-webjobs-secrets: the host keys), created here; the deployment package's container belongs to
//     a second identity used for nothing else (functionAppConfig.deployment), so the identity the SCIM
//     code runs as (AZURE_CLIENT_ID) cannot read or rewrite the app's own package;
//   - the host itself writes a few blobs only (leases, the timer trigger's lock, its keys) and no queue
//     or table traffic; the change-feed relay (the app's timer trigger) sends one message
//     per committed SCIM write, so neither competes with the table for the account's throughput.
// Split the table and the queue into their own account if they must outlive the app (`azd down` deletes
// the resource group) or need their own replication, network rules or lock.
//
// No shared keys anywhere: the account has allowSharedKeyAccess = false and every data-plane access goes
// through Entra ID (the identity below, or a developer's own role assignment).

@description('Region of every resource.')
param location string

@description('Tags for every resource (azd-env-name).')
param tags object

@description('Hash making the global names unique per subscription, environment and region.')
param resourceToken string

@description('Name of the function app (for the deployment container name).')
param functionAppName string

@secure()
@description('The Secret Token, written to Key Vault and nowhere else.')
param scimBearerToken string

@description('Replication of the storage account.')
param storageSkuName string

@description('Soft-delete retention of the Key Vault, in days.')
param keyVaultSoftDeleteRetentionInDays int

// Built-in role definition ids (the same in every tenant).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

var scimTableName = 'scim'
// The change feed (SCIM_CHANGE_QUEUE): created here, so the identity needs no right to create queues.
var changeQueueName = 'scim-changes'
var bearerTokenSecretName = 'scim-bearer-token'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
// The Functions host's own containers (AzureWebJobsStorage): created here so that its identity needs no
// right on any other container (it would otherwise create them on first start).
var hostLeasesContainerName = 'azure-webjobs-hosts'
var hostKeysContainerName = 'azure-webjobs-secrets'
// Not derivable from the app's public host name (func-api-<resourceToken>): should the Key Vault reference
// ever fail to resolve, App Service hands the app the literal '@Microsoft.KeyVault(SecretUri=...)' text
// instead of the secret, and that text must not be guessable.
var keyVaultName = 'kv-${uniqueString(subscription().id, resourceGroup().id, resourceToken, 'key-vault')}'

// ---------------------------------------------------------------------------------------------- identity

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-api-${resourceToken}'
  location: location
  tags: tags
}

// Reads (and, during `azd deploy`, writes) the deployment package: the platform uses it, the SCIM code
// does not (DefaultAzureCredential picks the identity above by AZURE_CLIENT_ID).
resource deploymentIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-deploy-${resourceToken}'
  location: location
  tags: tags
}

// ----------------------------------------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSkuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Entra's provisioning service and the Flex app (no VNet integration here) reach Azure over public
    // endpoints; access is by Entra ID only (no keys, no anonymous blobs).
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Children are declared top-level with `parent:` (offline parsers keep only one nested child).
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostLeasesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: hostLeasesContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostKeysContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: hostKeysContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource scimTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: scimTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource changeQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: changeQueueName
}

// ------------------------------------------------------------------------------------------- monitoring

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    retentionInDays: 30
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion only with an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING on the app).
    DisableLocalAuth: true
  }
}

// ------------------------------------------------------------------------------------------- Key Vault

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    enablePurgeProtection: true
    // Key Vault references of an app without VNet integration are resolved over the public endpoint;
    // only principals with a data-plane role (the app's identity, on this one secret) can read.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource bearerTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: bearerTokenSecretName
  properties: {
    value: scimBearerToken
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

// -------------------------------------------------------------------------- role assignments (identity)

// The Functions host (AzureWebJobsStorage): Storage Blob Data Owner, the role the Functions docs name for
// host storage, but on its two containers only, not the account (the Flex templates grant it account-wide,
// which would let the app rewrite its own deployment package). The timer trigger needs no more: its lock is
// a blob lease in azure-webjobs-hosts. No Queue or Table role at account scope: the host needs queues only
// for blob triggers and Durable Functions (this app has neither) and tables only for diagnostic events,
// which stay off without AzureWebJobsStorage__tableServiceUri.
resource hostLeasesOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostLeasesContainer.id, identity.id, storageBlobDataOwnerRoleId)
  scope: hostLeasesContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostKeysOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostKeysContainer.id, identity.id, storageBlobDataOwnerRoleId)
  scope: hostKeysContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The deployment package: read and write blobs of its container only (Contributor: the account has no
// hierarchical namespace, so Owner would add only ACL rights), for the deployment identity only.
resource deploymentPackageContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, deploymentIdentity.id, storageBlobDataContributorRoleId)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: deploymentIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The SCIM data: read/write on the `scim` table only, nothing else in the account.
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scimTable.id, identity.id, storageTableDataContributorRoleId)
  scope: scimTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The change feed: send messages to the `scim-changes` queue only. Sender, not Contributor: the app can
// neither read, peek nor delete the feed's messages (those are the consumers', with their own role on this
// queue), nor create or delete queues, nor touch another queue of the account.
resource queueMessageSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(changeQueue.id, identity.id, storageQueueDataMessageSenderRoleId)
  scope: changeQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Read the one secret the app needs, not the vault's other secrets.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(bearerTokenSecret.id, identity.id, keyVaultSecretsUserRoleId)
  scope: bearerTokenSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ------------------------------------------------------------------------------------------------ outputs

output identityId string = identity.id
output identityClientId string = identity.properties.clientId
output deploymentIdentityId string = deploymentIdentity.id
output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
// Without the trailing slash of primaryEndpoints.table: https://<account>.table.core.windows.net
output tableEndpoint string = 'https://${storage.name}.table.${environment().suffixes.storage}'
output tableName string = scimTable.name
// Likewise: https://<account>.queue.core.windows.net
output queueEndpoint string = 'https://${storage.name}.queue.${environment().suffixes.storage}'
output queueName string = changeQueue.name
output keyVaultName string = keyVault.name
output bearerTokenSecretName string = bearerTokenSecret.name
// Versionless: the app follows the secret's current version (see docs/deploy-azure.md, rotation).
output bearerTokenSecretUri string = bearerTokenSecret.properties.secretUri
output appInsightsConnectionString string = appInsights.properties.ConnectionString
