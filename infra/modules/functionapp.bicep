// The Functions app on a Flex Consumption plan (Linux, Python), with a system-assigned identity.
// Flex pulls its package from a blob container with that identity, so no storage key or connection string
// is needed anywhere (a Linux Consumption app would need one for its content).

param name string
param planName string
param location string
param tags object = {}

@description('The app settings of main.bicep (name -> string value); secure because a webhook URL may hold a token.')
@secure()
param appSettings object

@description('Name of the Application Insights component (identity-based ingestion).')
param appInsightsName string

@description('URL of the blob container holding the deployment package.')
param packageContainerUrl string

@allowed(['3.11'])
param pythonVersion string = '3.11'

@description('Memory per instance; checks of large windows hold both sides of the data in memory.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: packageContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
  }

  // The connection string only says where telemetry goes: with local auth off on the component, ingestion
  // needs the app's Entra ID token (Authorization=AAD) and its Monitoring Metrics Publisher role.
  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, {
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    })
  }
}

// No publishing user names and passwords: deployments authenticate with Entra ID (az login).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
