"""The app's routes, one router per page: `builds` (the start page and a build's page), `layers`
(the layer page), `labels` (labels, proposals, export and fine-tune), `review` (alert verdicts) and
`camera` (setting a camera up); `common` holds what they share (the workspace, pages, who asks)."""
