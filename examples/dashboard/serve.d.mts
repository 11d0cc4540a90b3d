/** Starts the dashboard's static server (pages plus the browser builds of @stomp/stompjs and mqtt). */
export function serveDashboard(opts?: { port?: number; host?: string }): Promise<{ url: string; port: number; close: () => Promise<void> }>;
