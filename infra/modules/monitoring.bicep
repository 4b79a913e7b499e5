// Monitoring: Log Analytics (request telemetry the checks query), Application Insights (the app's own logs),
// the custom tables MLRequests_CL / MLLabels_CL, and the data collection endpoint + rule through which
// scoring scripts send rows with the Logs Ingestion API. Local (key) auth is off everywhere.

param workspaceName string
param appInsightsName string
param collectionEndpointName string
param collectionRuleName string
param location string
param tags object = {}

@description('Contents of loganalytics.tables.json (loaded by main.bicep).')
param telemetry object

@description('Days Log Analytics keeps data (30 is included in the price of ingestion).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource tables 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [for t in telemetry.tables: {
  parent: workspace
  name: t.name
  properties: {
    plan: 'Analytics'
    schema: {
      name: t.name
      columns: t.columns
    }
  }
}]

// Needs Monitoring Metrics Publisher for the app's identity and APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource collectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: collectionEndpointName
  location: location
  tags: tags
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// Each stream lands unchanged in the table of the same name (Custom-X_CL -> X_CL).
resource collectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: collectionRuleName
  location: location
  tags: tags
  properties: {
    dataCollectionEndpointId: collectionEndpoint.id
    streamDeclarations: telemetry.streamDeclarations
    destinations: {
      logAnalytics: [
        {
          name: 'telemetry'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [for t in telemetry.tables: {
      streams: [t.stream]
      destinations: ['telemetry']
      transformKql: 'source'
      outputStream: t.stream
    }]
  }
  dependsOn: [
    tables
  ]
}

output workspaceName string = workspace.name
@description('The workspace GUID that queries name (LOG_ANALYTICS_WORKSPACE_ID), not its resource id.')
output workspaceCustomerId string = workspace.properties.customerId
output appInsightsName string = appInsights.name
output collectionRuleName string = collectionRule.name
@description('MLOPS_TELEMETRY_DCE for scoring scripts.')
output ingestionEndpoint string = collectionEndpoint.properties.logsIngestion.endpoint
@description('MLOPS_TELEMETRY_DCR_ID for scoring scripts (the rule immutable id, dcr-...).')
output ruleImmutableId string = collectionRule.properties.immutableId
