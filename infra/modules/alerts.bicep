// Alert rules an operator is woken by: messages dead-lettered (by Service Bus after the last delivery, or by the
// app for a message that can never succeed) and checks that fail (the run_check function erroring, or its
// deliveries being retried). Both read what the service already emits: Service Bus's DeadletteredMessages metric
// and the app's own telemetry in Application Insights (core/observability.py: mlops.deadletters,
// mlops.deliveries). Notifications go to an action group: the one given, or one made here from an e-mail address.

param serviceBusNamespaceName string
param appInsightsName string
param location string
param tags object = {}

@description('Resource id of an existing action group to notify. Empty: one is made for alertEmail, if given.')
param actionGroupId string = ''

@description('E-mail address for a new action group. Empty (and no actionGroupId): the rules fire without notifying.')
param alertEmail string = ''

@description('How often the rules look, and over how long (ISO 8601).')
param evaluationFrequency string = 'PT5M'
param windowSize string = 'PT15M'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusNamespaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource emailGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (empty(actionGroupId) && !empty(alertEmail)) {
  name: 'mlops-operators'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mlops'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var groups = !empty(actionGroupId) ? [actionGroupId] : (!empty(alertEmail) ? [emailGroup.id] : [])

// Service Bus dead-letters a message after maxDeliveryCount failed deliveries: work that did not happen.
resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'mlops-dead-lettered-messages'
  location: 'global'
  tags: tags
  properties: {
    description: 'A message was dead-lettered on the mlops topic: a check, alert or retrain step did not run. Inspect the subscription\'s dead-letter queue (reason and description are on each message).'
    severity: 1
    enabled: true
    scopes: [namespace.id]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    autoMitigate: true
    actions: [for id in groups: {
      actionGroupId: id
    }]
  }
}

// In Azure the app settles a permanently bad message itself (kept in the state store, kind 'deadletter') and
// counts it; a check that raised is retried, and each retry is counted. Either is worth a look.
resource failedChecks 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'mlops-failed-checks-and-app-dead-letters'
  location: location
  tags: tags
  properties: {
    description: 'Checks failed (run_check raised, or its deliveries were retried) or the app dead-lettered a message it can never process.'
    displayName: 'mlops: failed checks or dead-lettered messages'
    severity: 2
    enabled: true
    scopes: [appInsights.id]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    criteria: {
      allOf: [
        {
          query: 'union (customMetrics | where name == "mlops.deadletters" | extend kind = "dead-lettered", consumer = tostring(customDimensions.consumer), reason = tostring(customDimensions.reason), n = valueSum), (customMetrics | where name == "mlops.deliveries" and tostring(customDimensions.consumer) == "run-check" and tostring(customDimensions.outcome) == "retried" | extend kind = "check failed", consumer = "run-check", reason = "retried", n = valueSum), (requests | where operation_Name == "run_check" and success == false | extend kind = "check failed", consumer = "run-check", reason = tostring(resultCode), n = 1.0) | summarize failures = sum(n) by kind, consumer, reason'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'kind'
              operator: 'Include'
              values: ['*']
            }
            {
              name: 'consumer'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: groups
    }
  }
}

output deadLetterAlertId string = deadLetters.id
output failedChecksAlertId string = failedChecks.id
