-- wrk script: client-credentials grants against a Keyscope token endpoint.
-- KS_BASIC is base64("client_id:client_secret").
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("KS_BASIC")
