#version 330 core
// Background image as one full-screen triangle (no vertex buffer: positions from gl_VertexID).
// core/render.py inserts "#define VERTEX_SHADER" or "#define FRAGMENT_SHADER".

#if defined VERTEX_SHADER

uniform bool u_first_row_is_top;  // as in core.camera.opengl_projection

out vec2 v_uv;

void main() {
    vec2 ndc = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)) * 2.0 - 1.0;
    vec2 uv = 0.5 * (ndc + 1.0);
    // Texture row 0 holds image row 0 (the top); put it where the projection puts image row 0.
    v_uv = vec2(uv.x, u_first_row_is_top ? uv.y : 1.0 - uv.y);
    gl_Position = vec4(ndc, 1.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_image;
uniform float u_opacity;

in vec2 v_uv;

out vec4 out_color;  // premultiplied alpha

void main() {
    out_color = vec4(texture(u_image, v_uv).rgb * u_opacity, u_opacity);
}

#endif
