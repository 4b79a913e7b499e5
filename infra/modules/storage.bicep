// Storage: the Functions host (AzureWebJobsStorage, deployment package) and the app's state (tables) and
// reports (blobs). Shared key access is off, so only Entra ID identities with data roles get in.

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
param accountName string

param location string
param tags object = {}

@description('Blob container holding the Flex Consumption deployment package.')
param packageContainer string = 'app-package'

@description('Blob container of check reports (core.reports.BlobReportStore default).')
param reportsContainer string = 'reports'

@description('Table of the state store (core.state_tables.TableStateStore default).')
param stateTable string = 'mlopsstate'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [packageContainer, reportsContainer]: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// The adapter would create it on first use; creating it here makes a wrong name or role show up at deploy time.
resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: stateTable
}

output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
output packageContainerUrl string = '${account.properties.primaryEndpoints.blob}${packageContainer}'
